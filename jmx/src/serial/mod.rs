//! Java Object Serialization: a generic reader and a writer for the types JMX calls send.

pub mod annotation;
pub mod constants;
pub mod de;
pub mod mutf8;
pub mod ser;

pub use de::{DecodeError, Decoder, Limits};
pub use ser::Encoder;

#[cfg(test)]
mod tests;
