//! One JRMP connection (StreamProtocol): handshake, then calls one at a time.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::remote_ref::ObjId;
use crate::serial::constants::STREAM_MAGIC;
use crate::serial::de::{Content, DecodeError, Decoder, Handles, Limits};

const MAGIC: [u8; 4] = *b"JRMI";
const VERSION: [u8; 2] = [0, 2];
const STREAM_PROTOCOL: u8 = 0x4B;
const PROTOCOL_ACK: u8 = 0x4E;
const CALL: u8 = 0x50;
const RETURN: u8 = 0x51;
const PING: u8 = 0x52;
const PING_ACK: u8 = 0x53;
const DGC_ACK: u8 = 0x54;
const NORMAL_RETURN: u8 = 0x01;
const EXCEPTIONAL_RETURN: u8 = 0x02;

#[derive(Debug, thiserror::Error)]
pub enum JrmpError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Connecting or the TLS handshake failed.
    #[error("TLS: {0}")]
    Tls(std::io::Error),
    #[error("the server closed the connection")]
    Closed,
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// Anything a JRMP connection can run over: plain TCP or TLS.
pub trait Transport: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Transport for T {}

/// What the caller expects back, since the stream does not say whether a value follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnKind {
    /// `void` methods: nothing after the header.
    Void,
    /// Primitive return values ride in the header block (e.g. `isRegistered`'s boolean).
    Primitive,
    Object,
}

/// A decoded Return message.
#[derive(Debug)]
pub struct RawReturn {
    pub exceptional: bool,
    /// The UID to acknowledge with a DGCAck when the value holds remote references.
    pub ack_uid: [u8; 14],
    /// Primitive return bytes (for [`ReturnKind::Primitive`]).
    pub primitive: Vec<u8>,
    pub handles: Handles,
    /// The returned object, or the exception when `exceptional`.
    pub value: Content,
}

pub struct Connection {
    io: Box<dyn Transport>,
    buffer: Vec<u8>,
    limits: Limits,
}

impl Connection {
    /// Opens a plain TCP connection and performs the JRMP handshake.
    pub async fn connect_tcp(host: &str, port: u16, timeout: Duration) -> Result<Self, JrmpError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect((host, port)))
            .await
            .map_err(|_| JrmpError::Timeout(timeout))??;
        stream.set_nodelay(true)?;
        Self::handshake(Box::new(stream), timeout).await
    }

    /// Opens a TCP connection, negotiates TLS on it, and performs the JRMP handshake.
    pub(crate) async fn connect_tls(
        host: &str,
        port: u16,
        timeout: Duration,
        tls: &crate::tls::Connector,
    ) -> Result<Self, JrmpError> {
        let setup = async {
            let stream = TcpStream::connect((host, port)).await?;
            stream.set_nodelay(true)?;
            tls.connect(host, stream).await
        };
        let stream = tokio::time::timeout(timeout, setup)
            .await
            .map_err(|_| JrmpError::Timeout(timeout))?
            .map_err(JrmpError::Tls)?;
        Self::handshake(Box::new(stream), timeout).await
    }

    /// Performs the JRMP handshake on an established transport (TCP or TLS).
    pub async fn handshake(
        mut io: Box<dyn Transport>,
        timeout: Duration,
    ) -> Result<Self, JrmpError> {
        let exchange = async {
            let mut hello = Vec::with_capacity(7);
            hello.extend_from_slice(&MAGIC);
            hello.extend_from_slice(&VERSION);
            hello.push(STREAM_PROTOCOL);
            io.write_all(&hello).await?;
            io.flush().await?;
            let ack = read_u8(&mut io).await?;
            if ack == 0x15 || ack == 0x16 {
                return Err(JrmpError::Protocol(
                    "the server answered with TLS: it expects a TLS connection (configure TLS with its CA)".into(),
                ));
            }
            if ack != PROTOCOL_ACK {
                return Err(JrmpError::Protocol(format!(
                    "expected a protocol acknowledgement (0x4e), got 0x{ack:02x}"
                )));
            }
            // The server tells us our address as it sees it; we echo it back as our "default endpoint".
            let len = usize::from(io.read_u16().await?);
            let mut host = vec![0u8; len];
            io.read_exact(&mut host).await?;
            let _port = io.read_i32().await?;
            let mut endpoint = Vec::with_capacity(len + 6);
            endpoint.extend_from_slice(&(len as u16).to_be_bytes());
            endpoint.extend_from_slice(&host);
            endpoint.extend_from_slice(&0i32.to_be_bytes());
            io.write_all(&endpoint).await?;
            io.flush().await?;
            Ok::<_, JrmpError>(())
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| JrmpError::Timeout(timeout))??;
        Ok(Self {
            io,
            buffer: Vec::with_capacity(4096),
            limits: Limits::default(),
        })
    }

    /// Sends one call and reads its return. `args` are the serialized object arguments (see
    /// [`crate::serial::Encoder::for_rmi_call`]); `primitives` go in the header block after the hash.
    #[allow(clippy::too_many_arguments)]
    pub async fn call(
        &mut self,
        target: &ObjId,
        op: i32,
        hash: i64,
        primitives: &[u8],
        args: &[u8],
        kind: ReturnKind,
        timeout: Duration,
    ) -> Result<RawReturn, JrmpError> {
        let header_len = 22 + 4 + 8 + primitives.len();
        let header_len = u8::try_from(header_len)
            .map_err(|_| JrmpError::Protocol("too many primitive arguments".into()))?;
        let mut message = Vec::with_capacity(8 + usize::from(header_len) + args.len());
        message.push(CALL);
        message.extend_from_slice(&STREAM_MAGIC);
        message.push(0x77); // TC_BLOCKDATA
        message.push(header_len);
        message.extend_from_slice(&target.0);
        message.extend_from_slice(&op.to_be_bytes());
        message.extend_from_slice(&hash.to_be_bytes());
        message.extend_from_slice(primitives);
        message.extend_from_slice(args);

        let exchange = async {
            self.io.write_all(&message).await?;
            self.io.flush().await?;
            self.read_return(kind).await
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| JrmpError::Timeout(timeout))?
    }

    async fn read_return(&mut self, kind: ReturnKind) -> Result<RawReturn, JrmpError> {
        self.buffer.clear();
        loop {
            match parse_return(&self.buffer, kind, self.limits) {
                Ok(Some((value, used))) => {
                    if used != self.buffer.len() {
                        return Err(JrmpError::Protocol(format!(
                            "{} unexpected bytes after the return value",
                            self.buffer.len() - used
                        )));
                    }
                    return Ok(value);
                }
                Ok(None) => {}
                Err(error) => return Err(error),
            }
            if self.buffer.len() > self.limits.max_bytes {
                return Err(JrmpError::Protocol(format!(
                    "return larger than {} bytes",
                    self.limits.max_bytes
                )));
            }
            let mut chunk = [0u8; 16 * 1024];
            let read = self.io.read(&mut chunk).await?;
            if read == 0 {
                return Err(JrmpError::Closed);
            }
            self.buffer.extend_from_slice(&chunk[..read]);
        }
    }

    /// Acknowledges the remote references of a return, so the server may release its pin on them.
    pub async fn dgc_ack(&mut self, ack_uid: &[u8; 14]) -> Result<(), JrmpError> {
        let mut message = Vec::with_capacity(15);
        message.push(DGC_ACK);
        message.extend_from_slice(ack_uid);
        self.io.write_all(&message).await?;
        self.io.flush().await?;
        Ok(())
    }

    /// Checks the connection is alive (JRMP Ping / PingAck).
    pub async fn ping(&mut self, timeout: Duration) -> Result<(), JrmpError> {
        let exchange = async {
            self.io.write_all(&[PING]).await?;
            self.io.flush().await?;
            match read_u8(&mut self.io).await? {
                PING_ACK => Ok(()),
                other => Err(JrmpError::Protocol(format!(
                    "expected PingAck, got 0x{other:02x}"
                ))),
            }
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| JrmpError::Timeout(timeout))?
    }
}

async fn read_u8(io: &mut Box<dyn Transport>) -> Result<u8, JrmpError> {
    let mut byte = [0u8; 1];
    match io.read(&mut byte).await? {
        0 => Err(JrmpError::Closed),
        _ => Ok(byte[0]),
    }
}

/// Parses a Return message from the start of `bytes`; `Ok(None)` when more bytes are needed.
fn parse_return(
    bytes: &[u8],
    kind: ReturnKind,
    limits: Limits,
) -> Result<Option<(RawReturn, usize)>, JrmpError> {
    let Some(&first) = bytes.first() else {
        return Ok(None);
    };
    if first != RETURN {
        return Err(JrmpError::Protocol(format!(
            "expected a Return (0x51), got 0x{first:02x}"
        )));
    }
    let mut decoder = Decoder::new(&bytes[1..], limits);
    let parsed = (|| {
        decoder.read_magic()?;
        let header = match decoder.read_content()? {
            Content::Block(header) if header.len() >= 15 => header,
            other => {
                return Err(DecodeError::Invalid {
                    offset: decoder.position(),
                    message: format!("expected the return header block, got {other:?}"),
                });
            }
        };
        let exceptional = match header[0] {
            NORMAL_RETURN => false,
            EXCEPTIONAL_RETURN => true,
            other => {
                return Err(DecodeError::Invalid {
                    offset: 0,
                    message: format!("unknown return type {other}"),
                });
            }
        };
        let value = if exceptional || kind == ReturnKind::Object {
            decoder.read_object()?
        } else {
            Content::Null
        };
        let mut ack_uid = [0u8; 14];
        ack_uid.copy_from_slice(&header[1..15]);
        Ok((exceptional, ack_uid, header[15..].to_vec(), value))
    })();
    match parsed {
        Ok((exceptional, ack_uid, primitive, value)) => {
            let used = 1 + decoder.position();
            Ok(Some((
                RawReturn {
                    exceptional,
                    ack_uid,
                    primitive,
                    handles: decoder.into_handles(),
                    value,
                },
                used,
            )))
        }
        Err(DecodeError::Incomplete) => Ok(None),
        Err(error) => Err(error.into()),
    }
}
