//! A writer for the few Java types a JMX client sends, byte-compatible with `ObjectOutputStream`.

use std::collections::HashMap;

use super::constants::*;
use super::mutf8;
use crate::value::JavaArg;

/// A class as written in a descriptor.
struct ClassDef {
    name: &'static str,
    suid: i64,
    flags: u8,
    /// (type code, field name, JVM type for object fields)
    fields: &'static [(u8, &'static str, Option<&'static str>)],
    super_class: Option<&'static ClassDef>,
}

const NUMBER: ClassDef = ClassDef {
    name: "java.lang.Number",
    suid: -8742448824652078965,
    flags: SC_SERIALIZABLE,
    fields: &[],
    super_class: None,
};
const INTEGER: ClassDef = ClassDef {
    name: "java.lang.Integer",
    suid: 1360826667806852920,
    flags: SC_SERIALIZABLE,
    fields: &[(b'I', "value", None)],
    super_class: Some(&NUMBER),
};
const LONG: ClassDef = ClassDef {
    name: "java.lang.Long",
    suid: 4290774380558885855,
    flags: SC_SERIALIZABLE,
    fields: &[(b'J', "value", None)],
    super_class: Some(&NUMBER),
};
const DOUBLE: ClassDef = ClassDef {
    name: "java.lang.Double",
    suid: -9172774392245257468,
    flags: SC_SERIALIZABLE,
    fields: &[(b'D', "value", None)],
    super_class: Some(&NUMBER),
};
const BOOLEAN: ClassDef = ClassDef {
    name: "java.lang.Boolean",
    suid: -3665804199014368530,
    flags: SC_SERIALIZABLE,
    fields: &[(b'Z', "value", None)],
    super_class: None,
};
const OBJECT_NAME: ClassDef = ClassDef {
    name: "javax.management.ObjectName",
    suid: 1081892073854801359,
    flags: SC_SERIALIZABLE | SC_WRITE_METHOD,
    fields: &[],
    super_class: None,
};
const MARSHALLED_OBJECT: ClassDef = ClassDef {
    name: "java.rmi.MarshalledObject",
    suid: 8988374069173025854,
    flags: SC_SERIALIZABLE,
    fields: &[
        (b'I', "hash", None),
        (b'[', "locBytes", Some("[B")),
        (b'[', "objBytes", Some("[B")),
    ],
    super_class: None,
};
const ATTRIBUTE: ClassDef = ClassDef {
    name: "javax.management.Attribute",
    suid: 2484220110589082382,
    flags: SC_SERIALIZABLE,
    fields: &[
        (b'L', "name", Some("Ljava/lang/String;")),
        (b'L', "value", Some("Ljava/lang/Object;")),
    ],
    super_class: None,
};
const HASH_MAP: ClassDef = ClassDef {
    name: "java.util.HashMap",
    suid: 362498820763181265,
    flags: SC_SERIALIZABLE | SC_WRITE_METHOD,
    fields: &[(b'F', "loadFactor", None), (b'I', "threshold", None)],
    super_class: None,
};
const HASH_SET: ClassDef = ClassDef {
    name: "java.util.HashSet",
    suid: -5024744406713321676,
    flags: SC_SERIALIZABLE | SC_WRITE_METHOD,
    fields: &[],
    super_class: None,
};
const ARRAY_LIST: ClassDef = ClassDef {
    name: "java.util.ArrayList",
    suid: 8683452581122892189,
    flags: SC_SERIALIZABLE | SC_WRITE_METHOD,
    fields: &[(b'I', "size", None)],
    super_class: None,
};

const fn array_class(name: &'static str, suid: i64) -> ClassDef {
    ClassDef {
        name,
        suid,
        flags: SC_SERIALIZABLE,
        fields: &[],
        super_class: None,
    }
}

const STRING_ARRAY: ClassDef = array_class("[Ljava.lang.String;", -5921575005990323385);
const OBJECT_ARRAY: ClassDef = array_class("[Ljava.lang.Object;", -8012369246846506644);
const BYTE_ARRAY: ClassDef = array_class("[B", -5984413125824719648);
const INTEGER_ARRAY: ClassDef = array_class("[Ljava.lang.Integer;", -101421563860753893);
const OBJECT_NAME_ARRAY: ClassDef =
    array_class("[Ljavax.management.ObjectName;", 1262009912426809838);
const MARSHALLED_OBJECT_ARRAY: ClassDef =
    array_class("[Ljava.rmi.MarshalledObject;", -7032315260797228034);
const SUBJECT_ARRAY: ClassDef = array_class("[Ljavax.security.auth.Subject;", 6377066463800191576);

/// Writes one serialization stream.
pub struct Encoder {
    out: Vec<u8>,
    /// RMI call streams carry a (null) codebase annotation on every class descriptor; plain streams do not.
    rmi: bool,
    next_handle: u32,
    class_handles: HashMap<&'static str, u32>,
    /// Field type names are written once and referred to after, as the JDK does.
    type_handles: HashMap<&'static str, u32>,
}

impl Encoder {
    /// An encoder for the argument part of an RMI call (class annotations on, no stream header).
    pub fn for_rmi_call() -> Self {
        Self::new(true)
    }

    /// A complete plain stream with its header, as inside a `MarshalledObject`.
    pub fn plain_stream() -> Self {
        let mut encoder = Self::new(false);
        encoder.out.extend_from_slice(&STREAM_MAGIC);
        encoder
    }

    fn new(rmi: bool) -> Self {
        Self {
            out: Vec::new(),
            rmi,
            next_handle: BASE_HANDLE,
            class_handles: HashMap::new(),
            type_handles: HashMap::new(),
        }
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.out
    }

    pub fn write(&mut self, value: &JavaArg) {
        match value {
            JavaArg::Null => self.out.push(TC_NULL),
            JavaArg::String(s) => self.string(s),
            JavaArg::Int(v) => self.object(&INTEGER, |e| e.out.extend_from_slice(&v.to_be_bytes())),
            JavaArg::Long(v) => self.object(&LONG, |e| e.out.extend_from_slice(&v.to_be_bytes())),
            JavaArg::Double(v) => self.object(&DOUBLE, |e| {
                e.out.extend_from_slice(&v.to_bits().to_be_bytes())
            }),
            JavaArg::Boolean(v) => self.object(&BOOLEAN, |e| e.out.push(u8::from(*v))),
            JavaArg::ObjectName(name) => self.object(&OBJECT_NAME, |e| {
                e.string(name);
                e.out.push(TC_ENDBLOCKDATA);
            }),
            JavaArg::StringArray(items) => self.array(&STRING_ARRAY, items.len(), |e| {
                items.iter().for_each(|s| e.string(s))
            }),
            JavaArg::ObjectArray(items) => self.array(&OBJECT_ARRAY, items.len(), |e| {
                items.iter().for_each(|v| e.write(v))
            }),
            JavaArg::IntegerArray(items) => self.array(&INTEGER_ARRAY, items.len(), |e| {
                items.iter().for_each(|v| e.write(&JavaArg::Int(*v)))
            }),
            JavaArg::ObjectNameArray(items) => self.array(&OBJECT_NAME_ARRAY, items.len(), |e| {
                items
                    .iter()
                    .for_each(|n| e.write(&JavaArg::ObjectName(n.clone())))
            }),
            JavaArg::MarshalledArray(items) => {
                self.array(&MARSHALLED_OBJECT_ARRAY, items.len(), |e| {
                    items.iter().for_each(|v| e.marshalled(v))
                })
            }
            JavaArg::NullSubjects(count) => self.array(&SUBJECT_ARRAY, *count, |e| {
                (0..*count).for_each(|_| e.out.push(TC_NULL))
            }),
            JavaArg::Marshalled(inner) => self.marshalled(inner),
            JavaArg::Attribute { name, value } => self.object(&ATTRIBUTE, |e| {
                e.string(name);
                e.write(value);
            }),
            JavaArg::StringMap(entries) => self.object(&HASH_MAP, |e| {
                let capacity = hash_capacity(entries.len());
                e.out.extend_from_slice(&0.75f32.to_bits().to_be_bytes());
                e.out
                    .extend_from_slice(&((capacity as f32 * 0.75) as i32).to_be_bytes());
                e.block(&[capacity as i32, entries.len() as i32]);
                for (key, value) in entries {
                    e.string(key);
                    e.string(value);
                }
                e.out.push(TC_ENDBLOCKDATA);
            }),
            JavaArg::StringSet(items) => self.object(&HASH_SET, |e| {
                let capacity = hash_capacity(items.len());
                let mut block = Vec::with_capacity(12);
                block.extend_from_slice(&(capacity as i32).to_be_bytes());
                block.extend_from_slice(&0.75f32.to_bits().to_be_bytes());
                block.extend_from_slice(&(items.len() as i32).to_be_bytes());
                e.raw_block(&block);
                items.iter().for_each(|s| e.string(s));
                e.out.push(TC_ENDBLOCKDATA);
            }),
            JavaArg::StringList(items) => self.object(&ARRAY_LIST, |e| {
                e.out.extend_from_slice(&(items.len() as i32).to_be_bytes());
                e.block(&[items.len() as i32]);
                items.iter().for_each(|s| e.string(s));
                e.out.push(TC_ENDBLOCKDATA);
            }),
        }
    }

    /// `MarshalledObject(value)`: the value as a complete stream of its own, in `objBytes`.
    fn marshalled(&mut self, value: &JavaArg) {
        let (hash, bytes): (i32, _) = match value {
            JavaArg::Null => (13, None), // what `new MarshalledObject(null)` holds
            value => {
                let mut inner = Encoder::plain_stream();
                inner.write(value);
                (0, Some(inner.into_bytes())) // the hash is never checked by the server
            }
        };
        self.object(&MARSHALLED_OBJECT, |e| {
            e.out.extend_from_slice(&hash.to_be_bytes());
            e.out.push(TC_NULL); // locBytes
            match &bytes {
                Some(bytes) => {
                    e.array(&BYTE_ARRAY, bytes.len(), |e| e.out.extend_from_slice(bytes))
                }
                None => e.out.push(TC_NULL),
            }
        });
    }

    fn string(&mut self, text: &str) {
        let bytes = mutf8::encode(text);
        match u16::try_from(bytes.len()) {
            Ok(len) => {
                self.out.push(TC_STRING);
                self.out.extend_from_slice(&len.to_be_bytes());
            }
            Err(_) => {
                self.out.push(TC_LONGSTRING);
                self.out
                    .extend_from_slice(&(bytes.len() as u64).to_be_bytes());
            }
        }
        self.out.extend_from_slice(&bytes);
        self.next_handle += 1;
    }

    fn utf(&mut self, text: &str) {
        let bytes = mutf8::encode(text);
        self.out
            .extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        self.out.extend_from_slice(&bytes);
    }

    fn object(&mut self, class: &'static ClassDef, data: impl FnOnce(&mut Self)) {
        self.out.push(TC_OBJECT);
        self.class_desc(class);
        self.next_handle += 1;
        data(self);
    }

    fn array(&mut self, class: &'static ClassDef, len: usize, items: impl FnOnce(&mut Self)) {
        self.out.push(TC_ARRAY);
        self.class_desc(class);
        self.next_handle += 1;
        self.out.extend_from_slice(&(len as i32).to_be_bytes());
        items(self);
    }

    fn class_desc(&mut self, class: &'static ClassDef) {
        if let Some(handle) = self.class_handles.get(class.name) {
            self.out.push(TC_REFERENCE);
            self.out.extend_from_slice(&handle.to_be_bytes());
            return;
        }
        self.out.push(TC_CLASSDESC);
        self.class_handles.insert(class.name, self.next_handle);
        self.next_handle += 1;
        self.utf(class.name);
        self.out.extend_from_slice(&class.suid.to_be_bytes());
        self.out.push(class.flags);
        self.out
            .extend_from_slice(&(class.fields.len() as u16).to_be_bytes());
        for (code, name, type_name) in class.fields {
            self.out.push(*code);
            self.utf(name);
            if let Some(type_name) = type_name {
                match self.type_handles.get(type_name) {
                    Some(handle) => {
                        self.out.push(TC_REFERENCE);
                        self.out.extend_from_slice(&handle.to_be_bytes());
                    }
                    None => {
                        self.type_handles.insert(type_name, self.next_handle);
                        self.string(type_name);
                    }
                }
            }
        }
        if self.rmi {
            self.out.push(TC_NULL); // MarshalOutputStream.annotateClass: no codebase
        }
        self.out.push(TC_ENDBLOCKDATA);
        match class.super_class {
            Some(parent) => self.class_desc(parent),
            None => self.out.push(TC_NULL),
        }
    }

    fn block(&mut self, ints: &[i32]) {
        let bytes: Vec<u8> = ints.iter().flat_map(|v| v.to_be_bytes()).collect();
        self.raw_block(&bytes);
    }

    fn raw_block(&mut self, bytes: &[u8]) {
        self.out.push(TC_BLOCKDATA);
        self.out.push(bytes.len() as u8);
        self.out.extend_from_slice(bytes);
    }
}

/// The table size `HashMap` would choose: a power of two with room for `len` entries at load factor 0.75.
fn hash_capacity(len: usize) -> usize {
    let needed = (len as f64 / 0.75).ceil() as usize;
    needed.max(16).next_power_of_two()
}
