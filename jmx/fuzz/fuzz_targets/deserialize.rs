//! Feeds arbitrary bytes to the serialization reader, the value conversion and the remote-reference parser:
//! none of them may panic, loop forever or allocate without bound, whatever the input.
#![no_main]

use jmx::jrmp::RemoteRef;
use jmx::serial::{Decoder, Limits};
use jmx::value::to_value;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_bytes: 1 << 20, max_depth: 64 };
    let mut decoder = Decoder::new(data, limits);
    // Read contents until the input ends or breaks, as a Return message's body is read.
    for _ in 0..16 {
        match decoder.read_content() {
            Ok(content) => {
                let _ = to_value(decoder.handles(), &content);
                let _ = RemoteRef::from_stub(decoder.handles(), &content);
            }
            Err(_) => break,
        }
    }
});
