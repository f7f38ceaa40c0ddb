//! A generic reader for the Java Object Serialization stream format, over bytes that may be incomplete.
//!
//! It builds the stream's handle table (class descriptors, strings, objects, arrays, enums) and never runs or
//! needs any class: unknown classes are read from their descriptors. Input comes from the network, so every
//! length is checked against [`Limits`] before anything is allocated, nesting depth is bounded, and running out
//! of bytes is [`DecodeError::Incomplete`] (read more and try again), distinct from malformed input.

use super::constants::*;
use super::mutf8;

/// Bounds on what one stream may make us allocate or recurse into.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest stream accepted; also bounds every declared length.
    pub max_bytes: usize,
    /// Deepest nesting of objects inside objects.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 64 * 1024 * 1024,
            max_depth: 200,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes end in the middle of a value: read more and decode again.
    #[error("the stream ends early")]
    Incomplete,
    #[error("malformed serialization stream at byte {offset}: {message}")]
    Invalid { offset: usize, message: String },
    #[error("serialization stream nests deeper than {0} levels")]
    TooDeep(usize),
    #[error("serialization stream declares {what} of {size} bytes, more than the limit of {limit}")]
    TooLarge {
        what: &'static str,
        size: u64,
        limit: usize,
    },
    /// Protocol-1 Externalizable data has no length, so it cannot be skipped without knowing the class.
    #[error(
        "cannot decode an instance of {0}: it is Externalizable without block data (serialization protocol 1)"
    )]
    UnsupportedExternalizable(String),
}

/// Something the stream holds at a point where a value may stand.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    Null,
    /// An entry of the handle table (index, not the 0x7E0000-based wire handle).
    Ref(usize),
    /// Block data (adjacent segments merged).
    Block(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct FieldDesc {
    pub type_code: u8,
    pub name: String,
    /// For object and array fields, the JVM type name, e.g. `Ljava/lang/String;`.
    pub class_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClassDesc {
    pub name: String,
    pub suid: i64,
    pub flags: u8,
    pub fields: Vec<FieldDesc>,
    /// Interfaces of a dynamic proxy class (the name is then `$Proxy`).
    pub proxy_interfaces: Vec<String>,
    pub super_class: Option<usize>,
}

/// A field value: a primitive, or content for object fields.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Byte(i8),
    Char(u16),
    Double(f64),
    Float(f32),
    Int(i32),
    Long(i64),
    Short(i16),
    Boolean(bool),
    Object(Content),
}

/// What one class of an object's hierarchy wrote: its fields, and what its `writeObject` added.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassData {
    pub class: usize,
    pub fields: Vec<(String, FieldValue)>,
    pub annotation: Vec<Content>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub class: usize,
    /// From the topmost serializable superclass down to the object's own class.
    pub data: Vec<ClassData>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ArrayData {
    Bytes(Vec<u8>),
    Primitives(Vec<FieldValue>),
    Objects(Vec<Content>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    pub class: usize,
    pub data: ArrayData,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// An object whose contents are still being read (its handle exists so it can refer to itself).
    Pending,
    ClassDesc(ClassDesc),
    String(String),
    Object(Object),
    Array(Array),
    Enum {
        class: usize,
        constant: String,
    },
    Class(usize),
}

/// The handle table of one stream: what [`Content::Ref`] points into.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Handles {
    entries: Vec<Entry>,
}

impl Handles {
    pub fn get(&self, index: usize) -> Option<&Entry> {
        self.entries.get(index)
    }

    pub fn class_desc(&self, index: usize) -> Option<&ClassDesc> {
        match self.entries.get(index) {
            Some(Entry::ClassDesc(desc)) => Some(desc),
            _ => None,
        }
    }

    pub fn string(&self, content: &Content) -> Option<&str> {
        match content {
            Content::Ref(index) => match self.entries.get(*index) {
                Some(Entry::String(s)) => Some(s),
                _ => None,
            },
            _ => None,
        }
    }

    /// The class names of a descriptor and its superclasses, most specific first.
    pub fn class_chain(&self, desc: usize) -> Vec<&str> {
        let mut chain = Vec::new();
        let mut next = Some(desc);
        while let Some(index) = next {
            match self.class_desc(index) {
                Some(desc) if chain.len() < 64 => {
                    chain.push(desc.name.as_str());
                    next = desc.super_class;
                }
                _ => break,
            }
        }
        chain
    }
}

/// Reads contents from a serialization stream held in memory.
pub struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
    handles: Handles,
    depth: usize,
    limits: Limits,
}

type Result<T> = std::result::Result<T, DecodeError>;

impl<'a> Decoder<'a> {
    pub fn new(input: &'a [u8], limits: Limits) -> Self {
        Self {
            input,
            pos: 0,
            handles: Handles::default(),
            depth: 0,
            limits,
        }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn handles(&self) -> &Handles {
        &self.handles
    }

    pub fn into_handles(self) -> Handles {
        self.handles
    }

    /// Reads the stream header `AC ED 00 05`.
    pub fn read_magic(&mut self) -> Result<()> {
        let magic = self.take(4)?;
        if magic != [0xAC, 0xED, 0x00, 0x05] {
            return Err(self.invalid(format!("bad stream header {magic:02x?}")));
        }
        Ok(())
    }

    /// Reads the next content: an object, a string, an array, null, block data...
    pub fn read_content(&mut self) -> Result<Content> {
        loop {
            let tc = self.u8()?;
            return match tc {
                // The writer only resets between top-level objects; inside one it would orphan handles.
                TC_RESET if self.depth == 0 => {
                    self.handles.entries.clear();
                    continue;
                }
                TC_RESET => return Err(self.invalid("TC_RESET inside an object")),
                TC_BLOCKDATA => {
                    let len = usize::from(self.u8()?);
                    Ok(Content::Block(self.take(len)?.to_vec()))
                }
                TC_BLOCKDATALONG => {
                    let declared = self.i32()?;
                    let len = self.length(declared.into(), "block data")?;
                    Ok(Content::Block(self.take(len)?.to_vec()))
                }
                _ => self.read_object_with(tc),
            };
        }
    }

    /// Reads the next content, which must be a value (not block data).
    pub fn read_object(&mut self) -> Result<Content> {
        let tc = self.u8()?;
        self.read_object_with(tc)
    }

    fn read_object_with(&mut self, tc: u8) -> Result<Content> {
        self.depth += 1;
        if self.depth > self.limits.max_depth {
            return Err(DecodeError::TooDeep(self.limits.max_depth));
        }
        let result = match tc {
            TC_NULL => Ok(Content::Null),
            TC_REFERENCE => self.reference(),
            TC_STRING => {
                let len = usize::from(self.u16()?);
                self.new_string(len)
            }
            TC_LONGSTRING => {
                let declared = self.i64()?;
                let len = self.length(declared, "string")?;
                self.new_string(len)
            }
            TC_CLASSDESC | TC_PROXYCLASSDESC => self.class_desc_with(tc).map(|d| match d {
                Some(index) => Content::Ref(index),
                None => Content::Null,
            }),
            TC_OBJECT => self.new_object(),
            TC_ARRAY => self.new_array(),
            TC_ENUM => self.new_enum(),
            TC_CLASS => {
                let desc = self
                    .class_desc()?
                    .ok_or_else(|| self.invalid("TC_CLASS without a class"))?;
                Ok(Content::Ref(self.push(Entry::Class(desc))))
            }
            TC_EXCEPTION => {
                Err(self.invalid("the writer failed while writing this stream (TC_EXCEPTION)"))
            }
            other => Err(self.invalid(format!("unexpected type code 0x{other:02x}"))),
        };
        self.depth -= 1;
        result
    }

    fn reference(&mut self) -> Result<Content> {
        let handle = self.i32()?;
        let index = (handle as u32).wrapping_sub(BASE_HANDLE) as usize;
        if index >= self.handles.entries.len() {
            return Err(self.invalid(format!("reference to unknown handle 0x{handle:x}")));
        }
        Ok(Content::Ref(index))
    }

    fn new_string(&mut self, len: usize) -> Result<Content> {
        let text = mutf8::decode(self.take(len)?);
        Ok(Content::Ref(self.push(Entry::String(text))))
    }

    /// A class descriptor where one is expected: new, a reference to one, or null.
    fn class_desc(&mut self) -> Result<Option<usize>> {
        let tc = self.u8()?;
        self.class_desc_with(tc)
    }

    fn class_desc_with(&mut self, tc: u8) -> Result<Option<usize>> {
        match tc {
            TC_NULL => Ok(None),
            TC_REFERENCE => match self.reference()? {
                Content::Ref(index) if self.handles.class_desc(index).is_some() => Ok(Some(index)),
                _ => Err(self.invalid("reference to something that is not a class descriptor")),
            },
            TC_CLASSDESC => {
                let name = self.utf()?;
                let suid = self.i64()?;
                let index = self.push(Entry::Pending);
                let flags = self.u8()?;
                let count = self.u16()?;
                let mut fields = Vec::with_capacity(usize::from(count).min(self.remaining()));
                for _ in 0..count {
                    let type_code = self.u8()?;
                    let field_name = self.utf()?;
                    let class_name = match type_code {
                        b'L' | b'[' => {
                            let content = self.read_object()?;
                            let name = self
                                .handles
                                .string(&content)
                                .ok_or_else(|| self.invalid("field type name is not a string"))?;
                            Some(name.to_string())
                        }
                        b'B' | b'C' | b'D' | b'F' | b'I' | b'J' | b'S' | b'Z' => None,
                        other => {
                            return Err(
                                self.invalid(format!("unknown field type code 0x{other:02x}"))
                            );
                        }
                    };
                    fields.push(FieldDesc {
                        type_code,
                        name: field_name,
                        class_name,
                    });
                }
                self.skip_annotation()?;
                let super_class = self.class_desc()?;
                self.fill(
                    index,
                    Entry::ClassDesc(ClassDesc {
                        name,
                        suid,
                        flags,
                        fields,
                        proxy_interfaces: Vec::new(),
                        super_class,
                    }),
                )?;
                Ok(Some(index))
            }
            TC_PROXYCLASSDESC => {
                let index = self.push(Entry::Pending);
                let count = self.i32()?;
                let count = self.length(count.into(), "proxy interface list")?;
                let mut interfaces = Vec::with_capacity(count.min(self.remaining()));
                for _ in 0..count {
                    interfaces.push(self.utf()?);
                }
                self.skip_annotation()?;
                let super_class = self.class_desc()?;
                self.fill(
                    index,
                    Entry::ClassDesc(ClassDesc {
                        name: "$Proxy".into(),
                        suid: 0,
                        flags: SC_SERIALIZABLE,
                        fields: Vec::new(),
                        proxy_interfaces: interfaces,
                        super_class,
                    }),
                )?;
                Ok(Some(index))
            }
            other => Err(self.invalid(format!(
                "expected a class descriptor, found type code 0x{other:02x}"
            ))),
        }
    }

    /// Class annotations (RMI codebases) carry nothing we use; read past them.
    fn skip_annotation(&mut self) -> Result<()> {
        self.read_annotation().map(|_| ())
    }

    /// Contents up to TC_ENDBLOCKDATA, with adjacent block data merged.
    fn read_annotation(&mut self) -> Result<Vec<Content>> {
        let mut contents: Vec<Content> = Vec::new();
        loop {
            if self.peek()? == TC_ENDBLOCKDATA {
                self.pos += 1;
                return Ok(contents);
            }
            match (self.read_content()?, contents.last_mut()) {
                (Content::Block(more), Some(Content::Block(previous))) => {
                    previous.extend_from_slice(&more)
                }
                (content, _) => contents.push(content),
            }
        }
    }

    fn new_object(&mut self) -> Result<Content> {
        let class = self
            .class_desc()?
            .ok_or_else(|| self.invalid("object without a class"))?;
        let index = self.push(Entry::Pending);
        // Class data is written for the topmost class first.
        let mut hierarchy = Vec::new();
        let mut next = Some(class);
        while let Some(desc) = next {
            if hierarchy.len() > self.limits.max_depth {
                return Err(DecodeError::TooDeep(self.limits.max_depth));
            }
            hierarchy.push(desc);
            next = self.handles.class_desc(desc).and_then(|d| d.super_class);
        }
        let mut data = Vec::with_capacity(hierarchy.len());
        for desc_index in hierarchy.into_iter().rev() {
            let desc = self
                .handles
                .class_desc(desc_index)
                .cloned()
                .ok_or_else(|| self.invalid("object class is not a class descriptor"))?;
            let mut class_data = ClassData {
                class: desc_index,
                fields: Vec::with_capacity(desc.fields.len()),
                annotation: Vec::new(),
            };
            if desc.flags & SC_EXTERNALIZABLE != 0 {
                if desc.flags & SC_BLOCK_DATA == 0 {
                    return Err(DecodeError::UnsupportedExternalizable(desc.name));
                }
                class_data.annotation = self.read_annotation()?;
            } else if desc.flags & SC_SERIALIZABLE != 0 {
                for field in &desc.fields {
                    let value = self.field_value(field.type_code)?;
                    class_data.fields.push((field.name.clone(), value));
                }
                if desc.flags & SC_WRITE_METHOD != 0 {
                    class_data.annotation = self.read_annotation()?;
                }
            }
            data.push(class_data);
        }
        self.fill(index, Entry::Object(Object { class, data }))?;
        Ok(Content::Ref(index))
    }

    fn field_value(&mut self, type_code: u8) -> Result<FieldValue> {
        Ok(match type_code {
            b'B' => FieldValue::Byte(self.u8()? as i8),
            b'C' => FieldValue::Char(self.u16()?),
            b'D' => FieldValue::Double(f64::from_bits(self.i64()? as u64)),
            b'F' => FieldValue::Float(f32::from_bits(self.i32()? as u32)),
            b'I' => FieldValue::Int(self.i32()?),
            b'J' => FieldValue::Long(self.i64()?),
            b'S' => FieldValue::Short(self.u16()? as i16),
            b'Z' => FieldValue::Boolean(self.u8()? != 0),
            _ => FieldValue::Object(self.read_object()?),
        })
    }

    fn new_array(&mut self) -> Result<Content> {
        let class = self
            .class_desc()?
            .ok_or_else(|| self.invalid("array without a class"))?;
        let index = self.push(Entry::Pending);
        let element = self
            .handles
            .class_desc(class)
            .and_then(|d| d.name.as_bytes().get(1).copied())
            .ok_or_else(|| self.invalid("array class name is not an array type"))?;
        let count = self.i32()?;
        let width = match element {
            b'B' | b'Z' => 1,
            b'C' | b'S' => 2,
            b'I' | b'F' => 4,
            b'J' | b'D' => 8,
            _ => 1, // each object element takes at least one byte
        };
        let count = self.length(i64::from(count), "array")?;
        let needed = count.saturating_mul(width);
        if needed > self.limits.max_bytes {
            return Err(DecodeError::TooLarge {
                what: "an array",
                size: needed as u64,
                limit: self.limits.max_bytes,
            });
        }
        if element != b'L' && element != b'[' && needed > self.remaining() {
            return Err(DecodeError::Incomplete);
        }
        let data = match element {
            b'B' => ArrayData::Bytes(self.take(count)?.to_vec()),
            b'L' | b'[' => {
                let mut items = Vec::with_capacity(count.min(self.remaining()));
                for _ in 0..count {
                    items.push(self.read_object()?);
                }
                ArrayData::Objects(items)
            }
            primitive => {
                let mut items = Vec::with_capacity(count);
                for _ in 0..count {
                    items.push(self.field_value(primitive)?);
                }
                ArrayData::Primitives(items)
            }
        };
        self.fill(index, Entry::Array(Array { class, data }))?;
        Ok(Content::Ref(index))
    }

    fn new_enum(&mut self) -> Result<Content> {
        let class = self
            .class_desc()?
            .ok_or_else(|| self.invalid("enum without a class"))?;
        let index = self.push(Entry::Pending);
        let name = self.read_object()?;
        let constant = self
            .handles
            .string(&name)
            .ok_or_else(|| self.invalid("enum constant name is not a string"))?
            .to_string();
        self.fill(index, Entry::Enum { class, constant })?;
        Ok(Content::Ref(index))
    }

    /// Completes the entry reserved for an object being read.
    fn fill(&mut self, index: usize, entry: Entry) -> Result<()> {
        match self.handles.entries.get_mut(index) {
            Some(slot) => {
                *slot = entry;
                Ok(())
            }
            None => Err(self.invalid("the handle table changed while an object was read")),
        }
    }

    fn push(&mut self, entry: Entry) -> usize {
        self.handles.entries.push(entry);
        self.handles.entries.len() - 1
    }

    /// A declared length, refused when negative or beyond the limits, and waited for when beyond the input.
    fn length(&self, declared: i64, what: &'static str) -> Result<usize> {
        if declared < 0 {
            return Err(self.invalid(format!("negative {what} length {declared}")));
        }
        let len = declared as u64;
        if len > self.limits.max_bytes as u64 {
            return Err(DecodeError::TooLarge {
                what,
                size: len,
                limit: self.limits.max_bytes,
            });
        }
        Ok(len as usize)
    }

    fn invalid(&self, message: impl Into<String>) -> DecodeError {
        DecodeError::Invalid {
            offset: self.pos,
            message: message.into(),
        }
    }

    fn remaining(&self) -> usize {
        self.input.len() - self.pos
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8]> {
        if len > self.remaining() {
            return Err(DecodeError::Incomplete);
        }
        let bytes = &self.input[self.pos..self.pos + len];
        self.pos += len;
        Ok(bytes)
    }

    fn peek(&self) -> Result<u8> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or(DecodeError::Incomplete)
    }

    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    pub fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn i32(&mut self) -> Result<i32> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn i64(&mut self) -> Result<i64> {
        let b = self.take(8)?;
        let mut array = [0u8; 8];
        array.copy_from_slice(b);
        Ok(i64::from_be_bytes(array))
    }

    /// `DataInput.readUTF`: a u16 length and modified UTF-8.
    pub fn utf(&mut self) -> Result<String> {
        let len = usize::from(self.u16()?);
        Ok(mutf8::decode(self.take(len)?))
    }
}
