//! Property: whatever argument we write, the reader reads back as the value it stands for, consuming every
//! byte; and no byte string makes the reader panic.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is the test failing

use jmx::JavaArg;
use jmx::JavaValue;
use jmx::serial::{Decoder, Encoder, Limits};
use jmx::value::to_value;
use proptest::prelude::*;

fn text() -> impl Strategy<Value = String> {
    // Any Unicode, NUL and astral characters included (modified UTF-8 must carry them).
    proptest::string::string_regex("(?s).{0,40}").unwrap()
}

fn arg() -> impl Strategy<Value = JavaArg> {
    let leaf = prop_oneof![
        Just(JavaArg::Null),
        text().prop_map(JavaArg::String),
        any::<i32>().prop_map(JavaArg::Int),
        any::<i64>().prop_map(JavaArg::Long),
        any::<bool>().prop_map(JavaArg::Boolean),
        any::<f64>()
            .prop_filter("NaN is not equal to itself", |f| !f.is_nan())
            .prop_map(JavaArg::Double),
        text().prop_map(|t| JavaArg::ObjectName(format!("d:type={t}"))),
        prop::collection::vec(text(), 0..5).prop_map(JavaArg::StringArray),
        prop::collection::vec(text(), 0..5).prop_map(JavaArg::StringList),
        prop::collection::vec(text(), 0..5).prop_map(JavaArg::StringSet),
        prop::collection::vec((text(), text()), 0..5).prop_map(JavaArg::StringMap),
        prop::collection::vec(any::<i32>(), 0..5).prop_map(JavaArg::IntegerArray),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop::collection::vec(inner, 0..6).prop_map(JavaArg::ObjectArray)
    })
}

/// What reading `arg` back should give.
fn expected(arg: &JavaArg) -> JavaValue {
    let strings = |items: &[String]| {
        items
            .iter()
            .cloned()
            .map(JavaValue::String)
            .collect::<Vec<_>>()
    };
    match arg {
        JavaArg::Null => JavaValue::Null,
        JavaArg::String(s) => JavaValue::String(s.clone()),
        JavaArg::Int(v) => JavaValue::Int(*v),
        JavaArg::Long(v) => JavaValue::Long(*v),
        JavaArg::Boolean(v) => JavaValue::Boolean(*v),
        JavaArg::Double(v) => JavaValue::Double(*v),
        JavaArg::ObjectName(n) => JavaValue::ObjectName(n.clone()),
        JavaArg::StringArray(items) => JavaValue::Array {
            class: "[Ljava.lang.String;".into(),
            items: strings(items),
        },
        JavaArg::StringList(items) => JavaValue::List(strings(items)),
        JavaArg::StringSet(items) => JavaValue::Set(strings(items)),
        JavaArg::StringMap(entries) => JavaValue::Map(
            entries
                .iter()
                .map(|(k, v)| (JavaValue::String(k.clone()), JavaValue::String(v.clone())))
                .collect(),
        ),
        JavaArg::IntegerArray(items) => JavaValue::Array {
            class: "[Ljava.lang.Integer;".into(),
            items: items.iter().map(|v| JavaValue::Int(*v)).collect(),
        },
        JavaArg::ObjectArray(items) => JavaValue::Array {
            class: "[Ljava.lang.Object;".into(),
            items: items.iter().map(expected).collect(),
        },
        other => unreachable!("not generated: {other:?}"),
    }
}

proptest! {
    #[test]
    fn written_arguments_read_back(arg in arg()) {
        let mut encoder = Encoder::plain_stream();
        encoder.write(&arg);
        let bytes = encoder.into_bytes();
        let mut decoder = Decoder::new(&bytes, Limits::default());
        decoder.read_magic().unwrap();
        let content = decoder.read_content().unwrap();
        prop_assert_eq!(decoder.position(), bytes.len());
        prop_assert_eq!(to_value(decoder.handles(), &content).unwrap(), expected(&arg));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut decoder = Decoder::new(&bytes, Limits { max_bytes: 1 << 16, max_depth: 32 });
        if let Ok(content) = decoder.read_content() {
            let _ = to_value(decoder.handles(), &content);
        }
    }
}
