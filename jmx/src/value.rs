//! Java values: [`JavaValue`] for what comes back from a JMX agent, [`JavaArg`] for what we send.

use std::collections::BTreeMap;
use std::fmt;

use crate::serial::annotation::AnnotationReader;
use crate::serial::de::{ArrayData, Content, Entry, FieldValue, Handles, Object};

/// A value read from a Java serialization stream, with the common JDK and JMX classes turned into Rust shapes.
#[derive(Debug, Clone, PartialEq)]
pub enum JavaValue {
    Null,
    Boolean(bool),
    Byte(i8),
    Char(u16),
    Short(i16),
    Int(i32),
    Long(i64),
    Float(f32),
    Double(f64),
    String(String),
    /// `byte[]`.
    Bytes(Vec<u8>),
    /// Any other array; `class` is the Java array class name, e.g. `[Ljava.lang.String;`.
    Array {
        class: String,
        items: Vec<JavaValue>,
    },
    List(Vec<JavaValue>),
    Set(Vec<JavaValue>),
    /// Entries in the order the stream holds them.
    Map(Vec<(JavaValue, JavaValue)>),
    ObjectName(String),
    Enum {
        class: String,
        constant: String,
    },
    Composite(CompositeData),
    Tabular(TabularData),
    Exception(JavaException),
    /// An object of a class without a special shape: its fields, from all classes of its hierarchy.
    Object(JavaObject),
}

/// `javax.management.openmbean.CompositeData`.
#[derive(Debug, Clone, PartialEq)]
pub struct CompositeData {
    pub type_name: String,
    pub items: BTreeMap<String, JavaValue>,
}

/// `javax.management.openmbean.TabularData`: rows of composite data.
#[derive(Debug, Clone, PartialEq)]
pub struct TabularData {
    pub type_name: String,
    pub rows: Vec<CompositeData>,
}

/// A `Throwable`: class, message, and the chain of causes.
#[derive(Debug, Clone, PartialEq)]
pub struct JavaException {
    pub class: String,
    pub message: Option<String>,
    pub cause: Option<Box<JavaException>>,
}

impl JavaException {
    /// The exception and its causes, outermost first.
    pub fn chain(&self) -> impl Iterator<Item = &JavaException> {
        std::iter::successors(Some(self), |e| e.cause.as_deref())
    }

    /// The innermost cause.
    pub fn root_cause(&self) -> &JavaException {
        self.chain().last().unwrap_or(self)
    }
}

impl fmt::Display for JavaException {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for exception in self.chain() {
            if !first {
                f.write_str(", caused by ")?;
            }
            first = false;
            f.write_str(&exception.class)?;
            if let Some(message) = &exception.message {
                write!(f, ": {message}")?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct JavaObject {
    pub class: String,
    pub fields: BTreeMap<String, JavaValue>,
}

impl JavaValue {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            JavaValue::String(s) | JavaValue::ObjectName(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            JavaValue::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    /// Any integral value that fits an `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            JavaValue::Byte(v) => Some(i64::from(*v)),
            JavaValue::Short(v) => Some(i64::from(*v)),
            JavaValue::Int(v) => Some(i64::from(*v)),
            JavaValue::Long(v) => Some(*v),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            JavaValue::Float(v) => Some(f64::from(*v)),
            JavaValue::Double(v) => Some(*v),
            other => other.as_i64().map(|v| v as f64),
        }
    }

    /// The items of an array, list or set.
    pub fn as_slice(&self) -> Option<&[JavaValue]> {
        match self {
            JavaValue::Array { items, .. } | JavaValue::List(items) | JavaValue::Set(items) => {
                Some(items)
            }
            _ => None,
        }
    }

    /// A `String[]`, `List<String>` or `Set<String>` as strings.
    pub fn to_strings(&self) -> Option<Vec<String>> {
        self.as_slice()?
            .iter()
            .map(|item| item.as_str().map(str::to_string))
            .collect()
    }

    /// Looks up a map entry by string key, or a composite item by name.
    pub fn get(&self, key: &str) -> Option<&JavaValue> {
        match self {
            JavaValue::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            JavaValue::Composite(composite) => composite.items.get(key),
            JavaValue::Object(object) => object.fields.get(key),
            _ => None,
        }
    }
}

/// A value we send: the argument types JMX operations take.
#[derive(Debug, Clone, PartialEq)]
pub enum JavaArg {
    Null,
    String(String),
    /// `java.lang.Integer` (boxed; for an `int` parameter the signature still says `int`).
    Int(i32),
    Long(i64),
    Double(f64),
    Boolean(bool),
    ObjectName(String),
    StringArray(Vec<String>),
    ObjectArray(Vec<JavaArg>),
    IntegerArray(Vec<i32>),
    ObjectNameArray(Vec<String>),
    /// `java.util.HashMap<String, String>`.
    StringMap(Vec<(String, String)>),
    /// `java.util.HashSet<String>`.
    StringSet(Vec<String>),
    /// `java.util.ArrayList<String>`.
    StringList(Vec<String>),
    Marshalled(Box<JavaArg>),
    MarshalledArray(Vec<JavaArg>),
    /// `Subject[]` of nulls: delegation subjects are never sent.
    NullSubjects(usize),
    Attribute {
        name: String,
        value: Box<JavaArg>,
    },
}

/// Why a decoded stream could not be turned into a [`JavaValue`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot interpret {class}: {message}")]
pub struct ConvertError {
    pub class: String,
    pub message: String,
}

/// Deepest value nesting we follow; deeper parts (and reference cycles) become `Null`.
const MAX_DEPTH: usize = 64;

/// Turns decoded content into a [`JavaValue`].
pub fn to_value(handles: &Handles, content: &Content) -> Result<JavaValue, ConvertError> {
    Converter { handles, depth: 0 }.value(content)
}

struct Converter<'a> {
    handles: &'a Handles,
    depth: usize,
}

impl<'a> Converter<'a> {
    fn error(class: &str, message: impl Into<String>) -> ConvertError {
        ConvertError {
            class: class.to_string(),
            message: message.into(),
        }
    }

    fn value(&mut self, content: &Content) -> Result<JavaValue, ConvertError> {
        if self.depth >= MAX_DEPTH {
            return Ok(JavaValue::Null);
        }
        self.depth += 1;
        let result = self.value_inner(content);
        self.depth -= 1;
        result
    }

    fn value_inner(&mut self, content: &Content) -> Result<JavaValue, ConvertError> {
        let index = match content {
            Content::Null => return Ok(JavaValue::Null),
            Content::Block(bytes) => return Ok(JavaValue::Bytes(bytes.clone())),
            Content::Ref(index) => *index,
        };
        match self.handles.get(index) {
            Some(Entry::String(s)) => Ok(JavaValue::String(s.clone())),
            Some(Entry::Enum { class, constant }) => Ok(JavaValue::Enum {
                class: self.class_name(*class),
                constant: constant.clone(),
            }),
            Some(Entry::Array(array)) => {
                let class = self.class_name(array.class);
                Ok(match &array.data {
                    ArrayData::Bytes(bytes) => JavaValue::Bytes(bytes.clone()),
                    ArrayData::Primitives(items) => JavaValue::Array {
                        class,
                        items: items.iter().map(primitive).collect(),
                    },
                    ArrayData::Objects(items) => JavaValue::Array {
                        class,
                        items: items
                            .iter()
                            .map(|c| self.value(c))
                            .collect::<Result<_, _>>()?,
                    },
                })
            }
            Some(Entry::Object(object)) => self.object(object),
            Some(Entry::Class(class)) => Ok(JavaValue::String(self.class_name(*class))),
            Some(Entry::ClassDesc(desc)) => Ok(JavaValue::String(desc.name.clone())),
            // A reference back into an object still being read: a cycle.
            Some(Entry::Pending) | None => Ok(JavaValue::Null),
        }
    }

    fn class_name(&self, desc: usize) -> String {
        self.handles
            .class_desc(desc)
            .map(|d| d.name.clone())
            .unwrap_or_default()
    }

    fn field<'o>(object: &'o Object, name: &str) -> Option<&'o FieldValue> {
        object
            .data
            .iter()
            .rev()
            .flat_map(|data| data.fields.iter())
            .find(|(field, _)| field == name)
            .map(|(_, value)| value)
    }

    fn field_value(&mut self, object: &Object, name: &str) -> Result<JavaValue, ConvertError> {
        match Self::field(object, name) {
            Some(FieldValue::Object(content)) => self.value(content),
            Some(other) => Ok(primitive(other)),
            None => Ok(JavaValue::Null),
        }
    }

    /// The `writeObject` data of the class named `class` in the object's hierarchy.
    fn annotation<'o>(&self, object: &'o Object, class: &str) -> AnnotationReader<'o> {
        let items = object
            .data
            .iter()
            .find(|data| {
                self.handles
                    .class_desc(data.class)
                    .is_some_and(|d| d.name == class)
            })
            .map(|data| data.annotation.as_slice())
            .unwrap_or_default();
        AnnotationReader::new(items)
    }

    fn object(&mut self, object: &Object) -> Result<JavaValue, ConvertError> {
        let chain = self.handles.class_chain(object.class);
        let class = chain.first().copied().unwrap_or_default().to_string();
        let is = |name: &str| chain.contains(&name);

        if matches!(
            class.as_str(),
            "java.lang.Integer"
                | "java.lang.Long"
                | "java.lang.Short"
                | "java.lang.Byte"
                | "java.lang.Double"
                | "java.lang.Float"
                | "java.lang.Boolean"
                | "java.lang.Character"
        ) {
            return self.field_value(object, "value");
        }
        if is("java.lang.Throwable") {
            return Ok(JavaValue::Exception(self.exception(object, &class)?));
        }
        match class.as_str() {
            "javax.management.ObjectName" => {
                let mut data = self.annotation(object, &class);
                let name = data
                    .object()
                    .and_then(|c| self.handles.string(c))
                    .unwrap_or_default();
                return Ok(JavaValue::ObjectName(name.to_string()));
            }
            "java.util.ArrayList" | "javax.management.AttributeList" => {
                let mut data = self.annotation(object, "java.util.ArrayList");
                let size = match Self::field(object, "size") {
                    Some(FieldValue::Int(n)) => *n,
                    _ => return Err(Self::error(&class, "no size")),
                };
                data.i32(); // capacity
                return Ok(JavaValue::List(self.objects(&mut data, size, &class)?));
            }
            "java.util.HashMap"
            | "java.util.LinkedHashMap"
            | "java.util.Properties"
            | "java.util.Hashtable" => {
                let owner = if class == "java.util.LinkedHashMap" {
                    "java.util.HashMap"
                } else {
                    class.as_str()
                };
                let owner = if owner == "java.util.Properties" {
                    "java.util.Hashtable"
                } else {
                    owner
                };
                let mut data = self.annotation(object, owner);
                data.i32(); // buckets / capacity
                let size = data.i32().ok_or_else(|| Self::error(&class, "no size"))?;
                return self.pairs(&mut data, size, &class);
            }
            "java.util.TreeMap" => {
                let mut data = self.annotation(object, &class);
                let size = data.i32().ok_or_else(|| Self::error(&class, "no size"))?;
                return self.pairs(&mut data, size, &class);
            }
            "java.util.HashSet" | "java.util.LinkedHashSet" => {
                let mut data = self.annotation(object, "java.util.HashSet");
                data.i32(); // capacity
                data.bytes::<4>(); // load factor
                let size = data.i32().ok_or_else(|| Self::error(&class, "no size"))?;
                return Ok(JavaValue::Set(self.objects(&mut data, size, &class)?));
            }
            "java.util.TreeSet" => {
                let mut data = self.annotation(object, &class);
                data.object(); // comparator
                let size = data.i32().ok_or_else(|| Self::error(&class, "no size"))?;
                return Ok(JavaValue::Set(self.objects(&mut data, size, &class)?));
            }
            "javax.management.openmbean.CompositeDataSupport" => {
                return Ok(JavaValue::Composite(self.composite(object)?));
            }
            "javax.management.openmbean.TabularDataSupport" => {
                let type_name = self.open_type_name(object, "tabularType")?;
                let rows = match self.field_value(object, "dataMap")? {
                    JavaValue::Map(entries) => entries
                        .into_iter()
                        .filter_map(|(_, row)| match row {
                            JavaValue::Composite(row) => Some(row),
                            _ => None,
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                return Ok(JavaValue::Tabular(TabularData { type_name, rows }));
            }
            _ => {}
        }
        if class.starts_with("com.google.common.collect.") && class.ends_with("$SerializedForm") {
            // Guava's immutable collections travel as their serialized forms (Cassandra returns these).
            let items =
                |converter: &mut Self, field: &str| -> Result<Vec<JavaValue>, ConvertError> {
                    Ok(match converter.field_value(object, field)? {
                        JavaValue::Array { items, .. } => items,
                        _ => Vec::new(),
                    })
                };
            if Self::field(object, "keys").is_some() {
                let keys = items(self, "keys")?;
                let values = items(self, "values")?;
                return Ok(JavaValue::Map(keys.into_iter().zip(values).collect()));
            }
            let elements = items(self, "elements")?;
            return Ok(if class.contains("Set") {
                JavaValue::Set(elements)
            } else {
                JavaValue::List(elements)
            });
        }
        if (class.starts_with("java.util.Collections$") || class.starts_with("java.util.Arrays$"))
            && let Some(value) = self.wrapped_collection(object)?
        {
            return Ok(value);
        }
        let mut fields = BTreeMap::new();
        for data in &object.data {
            for (name, value) in &data.fields {
                let value = match value {
                    FieldValue::Object(content) => self.value(content)?,
                    other => primitive(other),
                };
                fields.insert(name.clone(), value);
            }
        }
        Ok(JavaValue::Object(JavaObject { class, fields }))
    }

    /// `Collections.unmodifiableList(...)`, `Arrays.asList(...)`, `Collections.emptyList()` and friends hold
    /// the real collection in a field; show that instead of the wrapper.
    fn wrapped_collection(&mut self, object: &Object) -> Result<Option<JavaValue>, ConvertError> {
        for field in ["c", "list", "m", "s", "a"] {
            if let Some(FieldValue::Object(content)) = Self::field(object, field) {
                return match self.value(content)? {
                    JavaValue::Array { items, .. } => Ok(Some(JavaValue::List(items))),
                    value => Ok(Some(value)),
                };
            }
        }
        let class = self.class_name(object.class);
        Ok(match class.as_str() {
            "java.util.Collections$EmptyList" => Some(JavaValue::List(Vec::new())),
            "java.util.Collections$EmptySet" => Some(JavaValue::Set(Vec::new())),
            "java.util.Collections$EmptyMap" => Some(JavaValue::Map(Vec::new())),
            _ => None,
        })
    }

    fn objects(
        &mut self,
        data: &mut AnnotationReader,
        size: i32,
        class: &str,
    ) -> Result<Vec<JavaValue>, ConvertError> {
        let mut items = Vec::new();
        for _ in 0..size.max(0) {
            let item = data
                .object()
                .ok_or_else(|| Self::error(class, "fewer elements than its size"))?;
            items.push(self.value(item)?);
        }
        Ok(items)
    }

    fn pairs(
        &mut self,
        data: &mut AnnotationReader,
        size: i32,
        class: &str,
    ) -> Result<JavaValue, ConvertError> {
        let mut entries = Vec::new();
        for _ in 0..size.max(0) {
            let key = data
                .object()
                .ok_or_else(|| Self::error(class, "fewer entries than its size"))?;
            let value = data
                .object()
                .ok_or_else(|| Self::error(class, "an entry without a value"))?;
            entries.push((self.value(key)?, self.value(value)?));
        }
        Ok(JavaValue::Map(entries))
    }

    fn open_type_name(&mut self, object: &Object, field: &str) -> Result<String, ConvertError> {
        Ok(self
            .field_value(object, field)?
            .get("typeName")
            .and_then(JavaValue::as_str)
            .unwrap_or_default()
            .to_string())
    }

    fn composite(&mut self, object: &Object) -> Result<CompositeData, ConvertError> {
        let type_name = self.open_type_name(object, "compositeType")?;
        let items = match self.field_value(object, "contents")? {
            JavaValue::Map(entries) => entries
                .into_iter()
                .filter_map(|(k, v)| k.as_str().map(|k| (k.to_string(), v)))
                .collect(),
            _ => BTreeMap::new(),
        };
        Ok(CompositeData { type_name, items })
    }

    fn exception(&mut self, object: &Object, class: &str) -> Result<JavaException, ConvertError> {
        let message = self
            .field_value(object, "detailMessage")?
            .as_str()
            .map(str::to_string);
        // The cause: Throwable.cause (itself when unset), or the older wrapper fields that JMX and RMI
        // exceptions still fill in.
        let mut cause = None;
        for field in [
            "cause",
            "exception",
            "runtimeException",
            "runtimeError",
            "error",
            "detail",
            "targetException",
        ] {
            if let Some(FieldValue::Object(Content::Ref(index))) = Self::field(object, field)
                && let Some(Entry::Object(inner)) = self.handles.get(*index)
                && !std::ptr::eq(inner, object)
                && self
                    .handles
                    .class_chain(inner.class)
                    .contains(&"java.lang.Throwable")
                && self.depth < MAX_DEPTH
            {
                let inner_class = self.class_name(inner.class);
                self.depth += 1;
                let inner_exception = self.exception(inner, &inner_class);
                self.depth -= 1;
                cause = Some(Box::new(inner_exception?));
                break;
            }
        }
        Ok(JavaException {
            class: class.to_string(),
            message,
            cause,
        })
    }
}

fn primitive(value: &FieldValue) -> JavaValue {
    match value {
        FieldValue::Byte(v) => JavaValue::Byte(*v),
        FieldValue::Char(v) => JavaValue::Char(*v),
        FieldValue::Double(v) => JavaValue::Double(*v),
        FieldValue::Float(v) => JavaValue::Float(*v),
        FieldValue::Int(v) => JavaValue::Int(*v),
        FieldValue::Long(v) => JavaValue::Long(*v),
        FieldValue::Short(v) => JavaValue::Short(*v),
        FieldValue::Boolean(v) => JavaValue::Boolean(*v),
        FieldValue::Object(_) => JavaValue::Null,
    }
}

/// JSON-friendly: numbers, strings and booleans as themselves; lists, sets and arrays as arrays; maps with
/// string keys as objects (others as arrays of `[key, value]` pairs); composite data as an object of its items;
/// tabular data as an array of rows; exceptions and other objects as objects naming their class.
#[cfg(feature = "serde")]
mod serialize {
    use serde::Serialize;
    use serde::ser::{SerializeMap, SerializeSeq, Serializer};

    use super::*;

    impl Serialize for JavaValue {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            match self {
                JavaValue::Null => serializer.serialize_none(),
                JavaValue::Boolean(v) => serializer.serialize_bool(*v),
                JavaValue::Byte(v) => serializer.serialize_i8(*v),
                JavaValue::Char(v) => serializer.serialize_str(&String::from_utf16_lossy(&[*v])),
                JavaValue::Short(v) => serializer.serialize_i16(*v),
                JavaValue::Int(v) => serializer.serialize_i32(*v),
                JavaValue::Long(v) => serializer.serialize_i64(*v),
                JavaValue::Float(v) => serializer.serialize_f32(*v),
                JavaValue::Double(v) => serializer.serialize_f64(*v),
                JavaValue::String(s) | JavaValue::ObjectName(s) => serializer.serialize_str(s),
                JavaValue::Enum { constant, .. } => serializer.serialize_str(constant),
                JavaValue::Bytes(bytes) => serializer.collect_seq(bytes),
                JavaValue::Array { items, .. } | JavaValue::List(items) | JavaValue::Set(items) => {
                    serializer.collect_seq(items)
                }
                JavaValue::Map(entries) => {
                    if entries.iter().all(|(k, _)| k.as_str().is_some()) {
                        let mut map = serializer.serialize_map(Some(entries.len()))?;
                        for (key, value) in entries {
                            map.serialize_entry(key.as_str().unwrap_or_default(), value)?;
                        }
                        map.end()
                    } else {
                        let mut seq = serializer.serialize_seq(Some(entries.len()))?;
                        for (key, value) in entries {
                            seq.serialize_element(&(key, value))?;
                        }
                        seq.end()
                    }
                }
                JavaValue::Composite(composite) => composite.items.serialize(serializer),
                JavaValue::Tabular(table) => {
                    serializer.collect_seq(table.rows.iter().map(|row| &row.items))
                }
                JavaValue::Exception(exception) => {
                    let mut map = serializer.serialize_map(None)?;
                    map.serialize_entry("exception", &exception.class)?;
                    map.serialize_entry("message", &exception.message)?;
                    map.serialize_entry("chain", &exception.to_string())?;
                    map.end()
                }
                JavaValue::Object(object) => {
                    let mut map = serializer.serialize_map(None)?;
                    map.serialize_entry("class", &object.class)?;
                    for (name, value) in &object.fields {
                        map.serialize_entry(name, value)?;
                    }
                    map.end()
                }
            }
        }
    }
}
