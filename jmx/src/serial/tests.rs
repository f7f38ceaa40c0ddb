//! Byte-exact vectors from the JDK (captured from `ObjectOutputStream` / `MarshalOutputStream` output), and
//! reader round trips.

use super::*;
use crate::value::{JavaArg, JavaValue, to_value};

fn hex(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chars = text.chars().filter(|c| !c.is_whitespace()).peekable();
    while chars.peek().is_some() {
        // "quoted" text stands for its bytes, with a u16 length in front written separately in the vector.
        let a = chars.next().unwrap();
        if a == '"' {
            for c in chars.by_ref() {
                if c == '"' {
                    break;
                }
                out.push(c as u8);
            }
            continue;
        }
        let b = chars.next().unwrap();
        out.push(u8::from_str_radix(&format!("{a}{b}"), 16).unwrap());
    }
    out
}

fn rmi_bytes(arg: &JavaArg) -> Vec<u8> {
    let mut encoder = Encoder::for_rmi_call();
    encoder.write(arg);
    encoder.into_bytes()
}

#[test]
fn object_name_as_the_jdk_writes_it_in_a_call() {
    let expected = hex(
        r#"73 72 001b "javax.management.ObjectName" 0f03a71beb6d15cf 03 0000 70 78 70
                          74 0016 "java.lang:type=Runtime" 78"#,
    );
    assert_eq!(
        rmi_bytes(&JavaArg::ObjectName("java.lang:type=Runtime".into())),
        expected
    );
}

#[test]
fn credentials_string_array_as_the_jdk_writes_it() {
    // The second "cassandra" is a new string here; the JDK writes a back-reference. Both are accepted.
    let bytes = rmi_bytes(&JavaArg::StringArray(vec![
        "cassandra".into(),
        "secret".into(),
    ]));
    let expected = hex(
        r#"75 72 0013 "[Ljava.lang.String;" add256e7e91d7b47 02 0000 70 78 70 00000002
                          74 0009 "cassandra" 74 0006 "secret""#,
    );
    assert_eq!(bytes, expected);
}

#[test]
fn marshalled_null_as_the_jdk_writes_it() {
    let expected = hex(
        r#"73 72 0019 "java.rmi.MarshalledObject" 7cbd1e97ed63fc3e 02 0003
                          49 0004 "hash" 5b 0008 "locBytes" 74 0002 "[B" 5b 0008 "objBytes" 71 007e0001
                          70 78 70 0000000d 70 70"#,
    );
    assert_eq!(
        rmi_bytes(&JavaArg::Marshalled(Box::new(JavaArg::Null))),
        expected
    );
}

#[test]
fn invoke_parameters_with_a_hash_map_as_the_jdk_writes_them() {
    let mut encoder = Encoder::plain_stream();
    encoder.write(&JavaArg::ObjectArray(vec![
        JavaArg::String("ks1".into()),
        JavaArg::StringMap(vec![("incremental".into(), "true".into())]),
    ]));
    let expected = hex(
        r#"aced0005 7572 0013 "[Ljava.lang.Object;" 90ce589f1073296c 02 0000 78 70 00000002
        74 0003 "ks1" 73 72 0011 "java.util.HashMap" 0507dac1c31660d1 03 0002 46 000a "loadFactor"
        49 0009 "threshold" 78 70 3f400000 0000000c 77 08 00000010 00000001 74 000b "incremental"
        74 0004 "true" 78"#,
    );
    assert_eq!(encoder.into_bytes(), expected);
}

/// Writes `arg` as a plain stream and reads it back.
fn round_trip(arg: &JavaArg) -> JavaValue {
    let mut encoder = Encoder::plain_stream();
    encoder.write(arg);
    let bytes = encoder.into_bytes();
    let mut decoder = Decoder::new(&bytes, Limits::default());
    decoder.read_magic().unwrap();
    let content = decoder.read_content().unwrap();
    assert_eq!(
        decoder.position(),
        bytes.len(),
        "everything written is read"
    );
    to_value(decoder.handles(), &content).unwrap()
}

#[test]
fn what_we_write_reads_back() {
    assert_eq!(round_trip(&JavaArg::Int(-7)), JavaValue::Int(-7));
    assert_eq!(
        round_trip(&JavaArg::Long(1 << 40)),
        JavaValue::Long(1 << 40)
    );
    assert_eq!(
        round_trip(&JavaArg::Boolean(true)),
        JavaValue::Boolean(true)
    );
    assert_eq!(round_trip(&JavaArg::Double(0.5)), JavaValue::Double(0.5));
    assert_eq!(
        round_trip(&JavaArg::String("nul\0 \u{1F600}".into())),
        JavaValue::String("nul\0 \u{1F600}".into())
    );
    assert_eq!(
        round_trip(&JavaArg::ObjectName(
            "org.apache.cassandra.db:type=StorageService".into()
        )),
        JavaValue::ObjectName("org.apache.cassandra.db:type=StorageService".into())
    );
    assert_eq!(
        round_trip(&JavaArg::StringArray(vec!["a".into(), "b".into()])).to_strings(),
        Some(vec!["a".into(), "b".into()])
    );
    assert_eq!(
        round_trip(&JavaArg::StringList(vec!["x".into()])),
        JavaValue::List(vec![JavaValue::String("x".into())])
    );
    assert_eq!(
        round_trip(&JavaArg::StringSet(vec!["s".into()])),
        JavaValue::Set(vec![JavaValue::String("s".into())])
    );
    let map = round_trip(&JavaArg::StringMap(vec![
        ("k".into(), "v".into()),
        ("k2".into(), "v2".into()),
    ]));
    assert_eq!(map.get("k2").and_then(JavaValue::as_str), Some("v2"));
    let ints = round_trip(&JavaArg::IntegerArray(vec![1, 2]));
    assert_eq!(
        ints.as_slice().unwrap(),
        [JavaValue::Int(1), JavaValue::Int(2)]
    );
}

#[test]
fn truncated_input_is_incomplete_and_garbage_is_invalid() {
    let mut encoder = Encoder::plain_stream();
    encoder.write(&JavaArg::StringMap(vec![("key".into(), "value".into())]));
    let bytes = encoder.into_bytes();
    for cut in 0..bytes.len() {
        let mut decoder = Decoder::new(&bytes[..cut], Limits::default());
        let result = decoder.read_magic().and_then(|_| decoder.read_content());
        assert_eq!(result, Err(DecodeError::Incomplete), "cut at {cut}");
    }
    let mut decoder = Decoder::new(&[0x42], Limits::default());
    assert!(matches!(
        decoder.read_content(),
        Err(DecodeError::Invalid { .. })
    ));
}

#[test]
fn hostile_lengths_are_refused_before_allocating() {
    // A byte array claiming 2^31-1 elements, then nothing.
    let stream = hex(r#"75 72 0002 "[B" acf317f8060854e0 02 0000 78 70 7fffffff"#);
    let mut decoder = Decoder::new(
        &stream,
        Limits {
            max_bytes: 1 << 20,
            max_depth: 10,
        },
    );
    assert!(matches!(
        decoder.read_content(),
        Err(DecodeError::TooLarge { .. })
    ));
    // A long string claiming 2^62 bytes.
    let stream = hex("7c 4000000000000000");
    let mut decoder = Decoder::new(&stream, Limits::default());
    assert!(matches!(
        decoder.read_content(),
        Err(DecodeError::TooLarge { .. })
    ));
}

#[test]
fn nesting_is_bounded() {
    // Object[] containing Object[] containing ... 1000 deep.
    let mut encoder = Encoder::plain_stream();
    let mut arg = JavaArg::Null;
    for _ in 0..1000 {
        arg = JavaArg::ObjectArray(vec![arg]);
    }
    encoder.write(&arg);
    let bytes = encoder.into_bytes();
    let mut decoder = Decoder::new(&bytes, Limits::default());
    decoder.read_magic().unwrap();
    assert_eq!(decoder.read_content(), Err(DecodeError::TooDeep(200)));
}

#[test]
fn a_reset_inside_an_object_is_refused_not_a_panic() {
    // Found by cargo fuzz: TC_RESET inside a HashMap's writeObject data used to empty the handle table under
    // the object being read.
    let stream = hex(
        "757200135b4c6a6176612e6c616e672e4f626a6563743b90ce589f1073296c0200007870000010027400036b7332737200116a6176612e7574696c2e486173684d61700507dac1c31660d103000246000a6c6f6164466163746f724900097468726573686f6c6478703f4000000000000c7708000000100000000179797974000b696e6372656d656e74616c7400047472756578",
    );
    let mut decoder = Decoder::new(&stream, Limits::default());
    assert!(matches!(
        decoder.read_content(),
        Err(DecodeError::Invalid { .. })
    ));
}
