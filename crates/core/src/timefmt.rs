//! Timestamps for people: RFC 3339 without a general-purpose formatter on the hot path.

/// Now, in whole Unix seconds (0 on a clock before 1970).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// RFC 3339 in UTC, or the raw number when out of range.
pub fn rfc3339(unix: i64) -> String {
    // Certificates carry whole seconds in years 1950-9999: plain civil-date arithmetic is
    // exact there and several times faster than a general formatter, which matters when a
    // report prints two timestamps for each of a hundred thousand certificates.
    const MIN: i64 = -631_152_000; // 1950-01-01
    const MAX: i64 = 253_402_300_799; // 9999-12-31T23:59:59
    if !(MIN..=MAX).contains(&unix) {
        use time::format_description::well_known::Rfc3339;
        return time::OffsetDateTime::from_unix_timestamp(unix)
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_else(|| unix.to_string());
    }
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    // Digits placed by hand: `format!` costs more than the date arithmetic.
    let mut out = *b"0000-00-00T00:00:00Z";
    let mut put = |at: usize, width: usize, mut value: u32| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year as u32);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, (secs / 3600) as u32);
    put(14, 2, (secs % 3600 / 60) as u32);
    put(17, 2, (secs % 60) as u32);
    out.iter().map(|&b| char::from(b)).collect()
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_agrees_with_the_time_crate() {
        use time::format_description::well_known::Rfc3339;
        let mut t: i64 = -631_152_000;
        while t < 253_402_300_799 {
            let expected = time::OffsetDateTime::from_unix_timestamp(t)
                .unwrap()
                .format(&Rfc3339)
                .unwrap();
            assert_eq!(rfc3339(t), expected, "{t}");
            t += 86_399 * 37 + 4_321;
        }
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(-700_000_000), "1947-10-27T03:33:20Z");
    }
}
