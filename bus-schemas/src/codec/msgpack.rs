//! A MessagePack reader for the payloads that decode: borrowed from the slice, no error text.
//!
//! It makes the same visitor calls as rmp-serde's deserializer, so a value it accepts is the
//! value rmp-serde returns, with one difference: a struct's field names and an enum's variant
//! names (serde's identifiers) reach the visitor as bytes, not checked as UTF-8 first. Serde's
//! derived identifier visitors match bytes and text alike; the names are most of a heartbeat's
//! strings. Anything unusual (an extension type, binary where a sequence is asked for, 128-bit
//! integers) or wrong is [`Invalid`], without a reason: the caller decodes those bytes again with
//! rmp-serde, which accepts what it accepts and says what was wrong.

use serde::de::{self, DeserializeSeed, Visitor};

/// The payload is not one this reader decodes; rmp-serde is asked instead.
#[derive(Debug)]
pub(super) struct Invalid;

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not decoded by the slice reader")
    }
}

impl std::error::Error for Invalid {}

impl de::Error for Invalid {
    #[cold]
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Invalid
    }
}

type Result<T> = std::result::Result<T, Invalid>;

/// rmp-serde's name for its extension-type newtype; those go to rmp-serde.
const EXT_STRUCT_NAME: &str = "_ExtStruct";

pub(super) struct SliceReader<'de> {
    bytes: &'de [u8],
    pos: usize,
    /// Containers that may still be opened; rmp-serde's depth counter, counted the same way.
    depth: usize,
}

impl<'de> SliceReader<'de> {
    pub(super) fn new(bytes: &'de [u8], max_depth: usize) -> Self {
        SliceReader {
            bytes,
            pos: 0,
            // rmp-serde keeps its counter in a u16.
            depth: max_depth.min(usize::from(u16::MAX)),
        }
    }

    /// Whether every byte was read.
    pub(super) fn at_end(&self) -> bool {
        self.pos == self.bytes.len()
    }

    #[inline]
    fn peek(&self) -> Result<u8> {
        self.bytes.get(self.pos).copied().ok_or(Invalid)
    }

    #[inline]
    fn byte(&mut self) -> Result<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    fn take(&mut self, len: usize) -> Result<&'de [u8]> {
        let end = self.pos.checked_add(len).ok_or(Invalid)?;
        let slice = self.bytes.get(self.pos..end).ok_or(Invalid)?;
        self.pos = end;
        Ok(slice)
    }

    #[inline]
    fn fixed<const N: usize>(&mut self) -> Result<[u8; N]> {
        <[u8; N]>::try_from(self.take(N)?).map_err(|_| Invalid)
    }

    fn len8(&mut self) -> Result<usize> {
        Ok(self.byte()?.into())
    }

    fn len16(&mut self) -> Result<usize> {
        Ok(u16::from_be_bytes(self.fixed()?).into())
    }

    fn len32(&mut self) -> Result<usize> {
        usize::try_from(u32::from_be_bytes(self.fixed()?)).map_err(|_| Invalid)
    }

    /// Scalars, as rmp-serde's `any_num`: what a number, a bool or nil marker holds.
    fn scalar<V: Visitor<'de>>(&mut self, marker: u8, visitor: V) -> Result<V::Value> {
        match marker {
            0x00..=0x7f => visitor.visit_u8(marker),
            0xe0..=0xff => visitor.visit_i8(marker as i8),
            0xc0 => visitor.visit_unit(),
            0xc2 => visitor.visit_bool(false),
            0xc3 => visitor.visit_bool(true),
            0xca => visitor.visit_f32(f32::from_be_bytes(self.fixed()?)),
            0xcb => visitor.visit_f64(f64::from_be_bytes(self.fixed()?)),
            0xcc => visitor.visit_u8(self.byte()?),
            0xcd => visitor.visit_u16(u16::from_be_bytes(self.fixed()?)),
            0xce => visitor.visit_u32(u32::from_be_bytes(self.fixed()?)),
            0xcf => visitor.visit_u64(u64::from_be_bytes(self.fixed()?)),
            0xd0 => visitor.visit_i8(i8::from_be_bytes(self.fixed()?)),
            0xd1 => visitor.visit_i16(i16::from_be_bytes(self.fixed()?)),
            0xd2 => visitor.visit_i32(i32::from_be_bytes(self.fixed()?)),
            0xd3 => visitor.visit_i64(i64::from_be_bytes(self.fixed()?)),
            _ => Err(Invalid),
        }
    }

    /// Any value, as rmp-serde's `any_inner` (binary only where bytes are allowed). With
    /// `identifier`, a string's bytes go to the visitor unchecked.
    fn any<V: Visitor<'de>>(
        &mut self,
        visitor: V,
        bytes: bool,
        identifier: bool,
    ) -> Result<V::Value> {
        let marker = self.byte()?;
        let str_len = match marker {
            0xa0..=0xbf => Some(usize::from(marker & 0x1f)),
            0xd9 => Some(self.len8()?),
            0xda => Some(self.len16()?),
            0xdb => Some(self.len32()?),
            _ => None,
        };
        if let Some(len) = str_len {
            let data = self.take(len)?;
            if identifier {
                return visitor.visit_borrowed_bytes(data);
            }
            return match std::str::from_utf8(data) {
                Ok(s) => visitor.visit_borrowed_str(s),
                // rmp-serde offers text that is not UTF-8 as bytes.
                Err(_) => visitor.visit_borrowed_bytes(data),
            };
        }
        match marker {
            0x90..=0x9f => self.seq(usize::from(marker & 0x0f), visitor),
            0xdc => self.len16().and_then(|len| self.seq(len, visitor)),
            0xdd => self.len32().and_then(|len| self.seq(len, visitor)),
            0x80..=0x8f => self.map(usize::from(marker & 0x0f), visitor),
            0xde => self.len16().and_then(|len| self.map(len, visitor)),
            0xdf => self.len32().and_then(|len| self.map(len, visitor)),
            0xc4..=0xc6 if bytes => {
                let len = match marker {
                    0xc4 => self.len8()?,
                    0xc5 => self.len16()?,
                    _ => self.len32()?,
                };
                visitor.visit_borrowed_bytes(self.take(len)?)
            }
            _ => self.scalar(marker, visitor),
        }
    }

    /// Opens a container: fails where rmp-serde's depth counter would.
    fn enter(&mut self) -> Result<()> {
        if self.depth <= 1 {
            return Err(Invalid);
        }
        self.depth -= 1;
        Ok(())
    }

    fn seq<V: Visitor<'de>>(&mut self, len: usize, visitor: V) -> Result<V::Value> {
        self.elements(len, visitor, false)
    }

    fn map<V: Visitor<'de>>(&mut self, len: usize, visitor: V) -> Result<V::Value> {
        self.elements(len, visitor, true)
    }

    /// A container's `len` elements (entries, for a map); the visitor must take them all.
    fn elements<V: Visitor<'de>>(&mut self, len: usize, visitor: V, map: bool) -> Result<V::Value> {
        self.enter()?;
        let mut access = Elements {
            reader: self,
            left: len,
        };
        let value = if map {
            visitor.visit_map(&mut access)?
        } else {
            visitor.visit_seq(&mut access)?
        };
        let left = access.left;
        self.depth += 1;
        (left == 0).then_some(value).ok_or(Invalid)
    }
}

/// A sequence's elements or a map's entries still to read.
struct Elements<'a, 'de> {
    reader: &'a mut SliceReader<'de>,
    left: usize,
}

impl<'de> de::SeqAccess<'de> for Elements<'_, 'de> {
    type Error = Invalid;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.reader).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

impl<'de> de::MapAccess<'de> for Elements<'_, 'de> {
    type Error = Invalid;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        // An entry counts as one element, taken with its key.
        de::SeqAccess::next_element_seed(self, seed)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        seed.deserialize(&mut *self.reader)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

/// An enum: a map of one entry (variant → content) or the variant alone (a unit variant).
struct Variant<'a, 'de> {
    reader: &'a mut SliceReader<'de>,
    unit: bool,
}

impl<'de> de::EnumAccess<'de> for Variant<'_, 'de> {
    type Error = Invalid;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self)> {
        let variant = seed.deserialize(&mut *self.reader)?;
        Ok((variant, self))
    }
}

impl<'de> de::VariantAccess<'de> for Variant<'_, 'de> {
    type Error = Invalid;

    fn unit_variant(self) -> Result<()> {
        if self.unit {
            return Ok(());
        }
        // As rmp-serde: a unit variant in a map holds nil.
        match self.reader.byte()? {
            0xc0 => Ok(()),
            _ => Err(Invalid),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value> {
        if self.unit {
            return Err(Invalid);
        }
        seed.deserialize(self.reader)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value> {
        if self.unit {
            return Err(Invalid);
        }
        self.reader.any(visitor, false, false)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        if self.unit {
            return Err(Invalid);
        }
        self.reader.any(visitor, false, false)
    }
}

/// Booleans and numbers, as rmp-serde reads them: whatever scalar the marker holds goes to the
/// visitor, which converts it or refuses it.
macro_rules! scalars {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
                let marker = self.byte()?;
                self.scalar(marker, visitor)
            }
        )*
    };
}

impl<'de> de::Deserializer<'de> for &mut SliceReader<'de> {
    type Error = Invalid;

    fn is_human_readable(&self) -> bool {
        false
    }

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.any(visitor, true, false)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.any(visitor, true, true)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        if self.peek()? == 0xc0 {
            self.pos += 1;
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        let len = match self.peek()? {
            m @ 0x80..=0x8f => {
                self.pos += 1;
                Some(usize::from(m & 0x0f))
            }
            0xde => {
                self.pos += 1;
                Some(self.len16()?)
            }
            0xdf => {
                self.pos += 1;
                Some(self.len32()?)
            }
            // Not a map: the variant alone, read from this marker on.
            _ => None,
        };
        match len {
            Some(1) => visitor.visit_enum(Variant {
                reader: self,
                unit: false,
            }),
            Some(_) => Err(Invalid),
            None => visitor.visit_enum(Variant {
                reader: self,
                unit: true,
            }),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        if name == EXT_STRUCT_NAME {
            return Err(Invalid);
        }
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        // rmp-serde writes a unit struct as [] and reads nil or [] as one.
        match self.peek()? {
            0xc0 | 0x90 => {
                self.pos += 1;
                visitor.visit_unit()
            }
            _ => self.any(visitor, true, false),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.any(visitor, false, false)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value> {
        self.any(visitor, false, false)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value> {
        self.any(visitor, false, false)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        self.any(visitor, false, false)
    }

    fn deserialize_i128<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value> {
        Err(Invalid)
    }

    fn deserialize_u128<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value> {
        Err(Invalid)
    }

    serde::forward_to_deserialize_any! {
        bytes byte_buf unit map str string char ignored_any
    }

    scalars! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_f32
        deserialize_f64
    }
}

#[cfg(test)]
mod tests;
