//! Buffered session I/O: replies are queued and flushed only when the session must wait for
//! input, which is what makes PIPELINING cheap.

use std::io;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;
use wasmrelay_codec::reply::{Enhanced, Reply};

use crate::smtp::stream::MaybeTls;

/// Why the session stopped reading.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("peer closed the connection")]
    Eof,
    #[error("peer timed out")]
    Timeout,
    #[error("relay is shutting down")]
    Shutdown,
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

impl ReadError {
    /// The last words to the peer, if it is still listening.
    pub fn reply(&self) -> Option<Reply> {
        match self {
            ReadError::Timeout => Some(Reply::new(
                421,
                Enhanced(4, 4, 2),
                "Timeout, closing connection",
            )),
            ReadError::Shutdown => Some(Reply::new(
                421,
                Enhanced(4, 3, 2),
                "Service shutting down, try again later",
            )),
            ReadError::Eof | ReadError::Io(_) => None,
        }
    }
}

pub struct Io<S> {
    stream: MaybeTls<S>,
    rbuf: BytesMut,
    wbuf: Vec<u8>,
    /// Bound on every write: a peer that stops reading must not hold the session forever.
    write_timeout: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Io<S> {
    pub fn new(stream: S, write_timeout: Duration) -> Self {
        Io {
            stream: MaybeTls::Plain(stream),
            rbuf: BytesMut::with_capacity(8192),
            wbuf: Vec::with_capacity(512),
            write_timeout,
        }
    }

    pub fn buffer(&mut self) -> &mut BytesMut {
        &mut self.rbuf
    }

    pub fn reply(&mut self, reply: &Reply) {
        self.wbuf.extend_from_slice(&reply.to_wire());
    }

    /// Sends the queued replies, within the write timeout.
    pub async fn flush(&mut self) -> io::Result<()> {
        let write = async {
            if !self.wbuf.is_empty() {
                self.stream.write_all(&self.wbuf).await?;
                self.wbuf.clear();
            }
            self.stream.flush().await
        };
        tokio::time::timeout(self.write_timeout, write)
            .await
            .unwrap_or_else(|_| {
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "peer does not read its replies",
                ))
            })
    }

    /// Appends whatever the peer sends next to the read buffer.
    pub async fn read_more(&mut self, timeout: Duration) -> Result<(), ReadError> {
        if self.rbuf.capacity() - self.rbuf.len() < 4096 {
            self.rbuf.reserve(16 * 1024);
        }
        match tokio::time::timeout(timeout, self.stream.read_buf(&mut self.rbuf)).await {
            Err(_) => Err(ReadError::Timeout),
            Ok(Ok(0)) => Err(ReadError::Eof),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(ReadError::Io(e)),
        }
    }

    /// Starts TLS. Bytes the peer pipelined before the handshake are discarded (they were sent
    /// in the clear and could be injected: CVE-2011-0411).
    pub async fn upgrade(&mut self, acceptor: &TlsAcceptor) -> io::Result<()> {
        self.rbuf.clear();
        self.stream.upgrade(acceptor).await
    }

    pub fn tls_description(&self) -> Option<String> {
        self.stream.tls_description()
    }

    pub async fn shutdown(&mut self) {
        let _ = tokio::time::timeout(self.write_timeout, self.stream.shutdown()).await;
    }
}
