//! Loopback ports held by the test: one that goes nowhere for the whole test, and one kept
//! for a server that starts later.
//!
//! Every server in these tests binds port 0 and reports the port it got; nothing picks a
//! "free" port and hopes it is still free when a server binds it. Where a port must be known
//! before its server runs, a [`ReservedPort`] holds it until the server listens.

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
        ClosedPort {
            socket: bind_loopback(false),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        local_addr(&self.socket)
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

/// A loopback port kept for a server the test starts later, when the port has to be in a
/// config before that server runs: a relay whose delivery goes back to its own listener, a
/// next hop that comes up after a first attempt failed. Until the server listens, the port
/// refuses connections like a [`ClosedPort`].
///
/// The reservation is a socket bound with `SO_REUSEADDR` that never listens. Linux lets
/// another `SO_REUSEADDR` socket bind the same address beside it and listen (tokio's
/// `TcpListener::bind`, so the relay, and Python's `socketserver` with `allow_reuse_address`
/// set one); a socket without the option cannot bind it, and `bind(:0)` hands out ports that
/// nothing holds. So between the reservation and the server's `listen`, the port is nobody
/// else's.
pub struct ReservedPort {
    socket: Socket,
}

impl ReservedPort {
    pub fn new() -> ReservedPort {
        ReservedPort {
            socket: bind_loopback(true),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        local_addr(&self.socket)
    }

    pub fn port(&self) -> u16 {
        self.addr().port()
    }
}

impl Default for ReservedPort {
    fn default() -> Self {
        ReservedPort::new()
    }
}

/// A TCP socket bound to `127.0.0.1:0`, not listening.
fn bind_loopback(reuse_address: bool) -> Socket {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a TCP socket");
    socket
        .set_reuse_address(reuse_address)
        .expect("set SO_REUSEADDR");
    socket
        .bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
        .expect("bind 127.0.0.1:0");
    socket
}

fn local_addr(socket: &Socket) -> SocketAddr {
    socket
        .local_addr()
        .expect("a bound socket has an address")
        .as_socket()
        .expect("an inet address")
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

    #[test]
    fn a_reserved_port_refuses_until_its_server_listens_and_no_one_else_gets_it() {
        let reserved = ReservedPort::new();
        let err = std::net::TcpStream::connect(reserved.addr()).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
        // What "pick a free port" does, and what a server without SO_REUSEADDR does.
        let others: Vec<std::net::TcpListener> = (0..200)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        assert!(others
            .iter()
            .all(|l| l.local_addr().unwrap() != reserved.addr()));
        let plain = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        assert!(plain.bind(&reserved.addr().into()).is_err());
        // The server it was kept for: std's listener sets SO_REUSEADDR on Unix, as tokio's.
        let server = std::net::TcpListener::bind(reserved.addr()).expect("the server binds");
        std::net::TcpStream::connect(reserved.addr()).expect("and is reached");
        drop(server);
    }
}
