//! Loopback addresses that go nowhere, and stay that way for the whole test.
//!
//! Every server in these tests binds port 0 and reports the port it got; nothing picks a
//! "free" port and hopes it is still free when a server binds it.

use std::net::{Ipv4Addr, SocketAddr};

use socket2::{Domain, Socket, Type};

/// A DNS server address where nothing answers, for relays whose tests plan no lookup: port 9
/// (discard) on loopback is privileged, so no test process takes it, and queries fail fast.
pub const NO_DNS: &str = "127.0.0.1:9";

/// A loopback TCP port that refuses every connection (RST, `ECONNREFUSED`) for as long as
/// this value lives: a socket bound to it without `listen`, and without `SO_REUSEADDR`, so
/// no other socket can bind the port meanwhile. A route to a dead smart host points here.
pub struct ClosedPort {
    socket: Socket,
}

impl ClosedPort {
    pub fn new() -> ClosedPort {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a TCP socket");
        socket
            .bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
            .expect("bind 127.0.0.1:0");
        ClosedPort { socket }
    }

    pub fn addr(&self) -> SocketAddr {
        self.socket
            .local_addr()
            .expect("a bound socket has an address")
            .as_socket()
            .expect("an inet address")
    }

    pub fn port(&self) -> u16 {
        self.addr().port()
    }
}

impl Default for ClosedPort {
    fn default() -> Self {
        ClosedPort::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_connections_and_keeps_the_port() {
        let closed = ClosedPort::new();
        let err = std::net::TcpStream::connect(closed.addr()).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
        assert!(
            std::net::TcpListener::bind(closed.addr()).is_err(),
            "nobody else can take the port"
        );
    }
}
