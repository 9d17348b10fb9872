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

/// What a read asks for while commands arrive: room for a pipelined burst of command lines.
const COMMAND_READ: usize = 1024;
/// The most one read asks for: message content arrives in blocks this large.
const BULK_READ: usize = 16 * 1024;
/// A reply buffer larger than this is given back when the session goes idle.
const IDLE_WRITE: usize = 1024;

/// The session's end of the connection. Both buffers start empty and grow with what passes
/// through them; [`Io::idle`] gives back what message content and long replies grew, so a
/// session that waits for its next command holds about a kilobyte of buffer.
pub struct Io<S> {
    stream: MaybeTls<S>,
    rbuf: BytesMut,
    /// How much the next read asks for: doubles (up to [`BULK_READ`]) while reads fill the
    /// buffer, back to [`COMMAND_READ`] when the session goes idle.
    read_size: usize,
    wbuf: Vec<u8>,
    /// Bound on every write: a peer that stops reading must not hold the session forever.
    write_timeout: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Io<S> {
    pub fn new(stream: S, write_timeout: Duration) -> Self {
        Io {
            stream: MaybeTls::Plain(stream),
            rbuf: BytesMut::new(),
            read_size: COMMAND_READ,
            wbuf: Vec::new(),
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
        if self.rbuf.capacity() - self.rbuf.len() < self.read_size / 2 {
            self.rbuf.reserve(self.read_size);
        }
        let spare = self.rbuf.capacity() - self.rbuf.len();
        match tokio::time::timeout(timeout, self.stream.read_buf(&mut self.rbuf)).await {
            Err(_) => Err(ReadError::Timeout),
            Ok(Ok(0)) => Err(ReadError::Eof),
            Ok(Ok(n)) => {
                if n == spare {
                    // The peer had more than we asked for: content, not commands.
                    self.read_size = (self.read_size * 2).min(BULK_READ);
                }
                Ok(())
            }
            Ok(Err(e)) => Err(ReadError::Io(e)),
        }
    }

    /// Between transactions, with every reply flushed: drops buffers that message content or
    /// a long reply grew (an idle session must not keep a message block's worth of memory).
    pub fn idle(&mut self) {
        if self.rbuf.is_empty() && self.rbuf.capacity() > COMMAND_READ {
            self.rbuf = BytesMut::new();
        }
        self.read_size = COMMAND_READ;
        if self.wbuf.is_empty() && self.wbuf.capacity() > IDLE_WRITE {
            self.wbuf = Vec::new();
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
