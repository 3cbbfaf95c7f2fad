//! The few DER walks done by hand: shapes the structured decoders reject or do not expose.

/// One definite-length DER TLV: (tag, content, rest). Multi-byte tags are not needed here.
pub(crate) fn tlv(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, data) = data.split_first()?;
    let (&first, data) = data.split_first()?;
    let (len, data) = if first < 0x80 {
        (first as usize, data)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || data.len() < n {
            return None;
        }
        let len = data[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, &data[n..])
    };
    if data.len() < len {
        return None;
    }
    Some((tag, &data[..len], &data[len..]))
}

/// The whole TLV at the start of `data` (header included), and the rest.
pub(crate) fn tlv_whole(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (_, _, rest) = tlv(data)?;
    Some((&data[..data.len() - rest.len()], rest))
}

/// DER SEQUENCE of already-encoded elements.
pub(crate) fn sequence(parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = vec![0x30];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    for part in parts {
        out.extend_from_slice(part);
    }
    out
}

/// RSAPublicKey DER from a PKCS#1 RSAPrivateKey, without the cost of loading the private key:
/// pairing only needs the public half, which the private key carries verbatim.
pub(crate) fn rsa_public_from_private(pkcs1: &[u8]) -> Option<Vec<u8>> {
    let (0x30, body, _) = tlv(pkcs1)? else {
        return None;
    };
    let (version, rest) = tlv_whole(body)?;
    if version.first() != Some(&0x02) {
        return None;
    }
    let (modulus, rest) = tlv_whole(rest)?;
    let (exponent, rest) = tlv_whole(rest)?;
    // privateExponent must follow: this is a private key, not a public one.
    let (private_exponent, _) = tlv_whole(rest)?;
    if [modulus, exponent, private_exponent]
        .iter()
        .any(|t| t.first() != Some(&0x02))
    {
        return None;
    }
    Some(sequence(&[modulus, exponent]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlv_rejects_lengths_past_the_end() {
        assert!(tlv(&[0x30, 0x05, 0x00]).is_none());
        assert!(tlv(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_none());
        assert_eq!(
            tlv(&[0x02, 0x01, 0x03, 0xff]),
            Some((0x02, &[3u8][..], &[0xffu8][..]))
        );
    }

    #[test]
    fn sequences_use_long_lengths_when_needed() {
        assert_eq!(
            sequence(&[&[0x02, 0x01, 0x05]]),
            vec![0x30, 0x03, 0x02, 0x01, 0x05]
        );
        let big = vec![0u8; 300];
        let seq = sequence(&[&big]);
        assert_eq!(&seq[..4], &[0x30, 0x82, 0x01, 0x2c]);
        assert_eq!(tlv(&seq).unwrap().1.len(), 300);
    }
}
