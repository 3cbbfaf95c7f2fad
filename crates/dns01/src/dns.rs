//! Talking to one DNS server over UDP with hickory-net: non-recursive queries and pre-signed
//! update messages, with every failure turned into an [`ErrorKind`] that names the server.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use hickory_net::proto::op::{
    DnsRequest, DnsRequestOptions, DnsResponse, Message, Query, ResponseCode,
};
use hickory_net::proto::rr::{Name, RecordType};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::udp::UdpClientStream;
use hickory_net::xfer::DnsExchange;
use hickory_net::{DnsHandle, NetError};

use crate::error::ErrorKind;

/// A UDP exchange with one server. Requests are retransmitted inside `timeout`.
pub(crate) struct Conn {
    exchange: DnsExchange<TokioRuntimeProvider>,
    pub(crate) server: SocketAddr,
    timeout: Duration,
}

impl Conn {
    /// Must be called inside a tokio runtime: the exchange's background task is spawned on it.
    pub(crate) fn new(server: SocketAddr, timeout: Duration) -> Self {
        let exchange = UdpClientStream::builder(server, TokioRuntimeProvider::new())
            .with_timeout(Some(timeout))
            .exchange();
        Self {
            exchange,
            server,
            timeout,
        }
    }

    /// Sends `message` as is (already signed when it needs to be) and returns the answer,
    /// whatever its response code.
    pub(crate) async fn send(&self, message: Message) -> Result<DnsResponse, ErrorKind> {
        let options = request_options();
        let mut answers = self.exchange.send(DnsRequest::new(message, options));
        // The UDP stream times out by itself; this outer limit only guards against a stream that
        // never ends.
        let next = tokio::time::timeout(self.timeout + Duration::from_secs(1), answers.next());
        match next.await {
            Ok(Some(Ok(response))) => Ok(response),
            Ok(Some(Err(e))) => Err(self.net_error(e)),
            Ok(None) | Err(_) => Err(ErrorKind::Timeout {
                server: self.server,
                after: self.timeout,
            }),
        }
    }

    /// A non-recursive query: only what this server itself holds counts.
    pub(crate) async fn query(
        &self,
        name: &Name,
        rtype: RecordType,
    ) -> Result<DnsResponse, ErrorKind> {
        let mut message = Message::query();
        message.metadata.recursion_desired = false;
        message.add_query(Query::query(name.clone(), rtype));
        message
            .edns
            .get_or_insert_with(Default::default)
            .set_max_payload(hickory_net::proto::op::DEFAULT_MAX_PAYLOAD_LEN);
        self.send(message).await
    }

    fn net_error(&self, e: NetError) -> ErrorKind {
        let server = self.server;
        match e {
            NetError::Timeout => ErrorKind::Timeout {
                server,
                after: self.timeout,
            },
            NetError::Io(io) => ErrorKind::Network {
                server,
                reason: io.to_string(),
            },
            NetError::Proto(p) => ErrorKind::BadResponse {
                server,
                reason: p.to_string(),
            },
            other => ErrorKind::Network {
                server,
                reason: other.to_string(),
            },
        }
    }
}

fn request_options() -> DnsRequestOptions {
    let mut options = DnsRequestOptions::default();
    options.recursion_desired = false;
    options.use_edns = true;
    // The first retransmission after 100 ms: loopback and LAN servers answer in well under that,
    // and a lost datagram should not cost the default third of a second.
    options.retry_interval = Duration::from_millis(100);
    options
}

/// The mnemonic of a response code as dig prints it: `NOERROR`, `NOTAUTH`, `SERVFAIL`, ...
pub(crate) fn mnemonic(code: ResponseCode) -> String {
    match code {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        ResponseCode::YXDomain => "YXDOMAIN".into(),
        ResponseCode::YXRRSet => "YXRRSET".into(),
        ResponseCode::NXRRSet => "NXRRSET".into(),
        ResponseCode::NotAuth => "NOTAUTH".into(),
        ResponseCode::NotZone => "NOTZONE".into(),
        ResponseCode::BADVERS => "BADVERS".into(),
        ResponseCode::BADSIG => "BADSIG".into(),
        ResponseCode::BADKEY => "BADKEY".into(),
        ResponseCode::BADTIME => "BADTIME".into(),
        ResponseCode::BADMODE => "BADMODE".into(),
        ResponseCode::BADNAME => "BADNAME".into(),
        ResponseCode::BADALG => "BADALG".into(),
        ResponseCode::BADTRUNC => "BADTRUNC".into(),
        ResponseCode::BADCOOKIE => "BADCOOKIE".into(),
        ResponseCode::Unknown(n) => format!("RCODE{n}"),
    }
}
