//! Jackson's scalar coercion, applied to a whole request at once: wherever a field wants a string, a JSON number
//! is taken as its text (`"keyspace": 123` is the keyspace `"123"`), as Icarus's Jackson mapper did. Doing it here,
//! in the one deserializer every request goes through, keeps the field types plain `String`s.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Error, Value};

/// A JSON value whose string-typed parts also accept numbers; everything else decodes as `serde_json::Value` does.
pub struct Lenient(pub Value);

impl<'de> Deserializer<'de> for Lenient {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        // Containers are walked here, so the values inside them stay lenient too.
        match self.0 {
            Value::Array(items) => visitor.visit_seq(Items(items.into_iter())),
            Value::Object(fields) => visitor.visit_map(Fields {
                fields: fields.into_iter(),
                value: None,
            }),
            scalar => scalar.deserialize_any(visitor),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_string(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Number(number) => visitor.visit_string(number.to_string()),
            other => other.deserialize_string(visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            other => visitor.visit_some(Lenient(other)),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.0.deserialize_enum(name, variants, visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes byte_buf unit unit_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

struct Items(std::vec::IntoIter<Value>);

impl<'de> SeqAccess<'de> for Items {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        self.0
            .next()
            .map(|item| seed.deserialize(Lenient(item)))
            .transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct Fields {
    fields: serde_json::map::IntoIter,
    value: Option<Value>,
}

impl<'de> MapAccess<'de> for Fields {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some((key, value)) = self.fields.next() else {
            return Ok(None);
        };
        self.value = Some(value);
        seed.deserialize(de::value::StringDeserializer::<Error>::new(key))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        match self.value.take() {
            Some(value) => seed.deserialize(Lenient(value)),
            None => Err(de::Error::custom(
                "a map value was asked for before its key",
            )),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.fields.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;
    use std::collections::BTreeMap;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Inner {
        name: String,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Sample {
        keyspace: Option<String>,
        tables: Vec<String>,
        inner: Inner,
        rename: BTreeMap<String, String>,
        count: u32,
        flag: bool,
    }

    fn decode(value: Value) -> Result<Sample, String> {
        Sample::deserialize(Lenient(value)).map_err(|e| e.to_string())
    }

    #[test]
    fn numbers_become_strings_wherever_a_string_is_wanted() {
        let sample = decode(json!({
            "keyspace": 123, "tables": [1, "t", 2.5], "inner": {"name": -7},
            "rename": {"ks.a": 9}, "count": 3, "flag": true
        }))
        .unwrap();
        assert_eq!(sample.keyspace.as_deref(), Some("123"));
        assert_eq!(sample.tables, ["1", "t", "2.5"]);
        assert_eq!(sample.inner.name, "-7");
        assert_eq!(sample.rename["ks.a"], "9");
        assert_eq!((sample.count, sample.flag), (3, true));
    }

    #[test]
    fn other_mismatches_are_still_refused() {
        let base = json!({"keyspace": null, "tables": [], "inner": {"name": "n"}, "rename": {}, "count": 1, "flag": false});
        assert_eq!(decode(base.clone()).unwrap().keyspace, None);
        for (field, bad) in [
            ("keyspace", json!({"a": 1})),
            ("tables", json!([["nested"]])),
            ("count", json!("lots")),
            ("flag", json!(1)),
        ] {
            let mut body = base.clone();
            body[field] = bad;
            assert!(decode(body).is_err(), "{field}");
        }
    }
}
