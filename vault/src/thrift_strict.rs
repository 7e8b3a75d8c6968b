//! A strict reader of Thrift compact-protocol structs, for the parts of a
//! segment file that `verify` must read exactly as every Parquet reader does.
//!
//! Readers disagree on sloppy Thrift: parquet-rs takes a field by its id
//! whatever type it is tagged with (and the last of repeated copies), Arrow
//! C++ and DuckDB skip a field tagged with another type. Bytes that pass this
//! reader leave no room for that: every field in increasing order, once, with
//! its own type, and none the writer does not write ([`Kind`] tables name
//! them). Used for page headers ([`crate::page_headers`]) and page indexes
//! ([`crate::page_index`]).

// Compact protocol types.
const BOOL_TRUE: u8 = 1;
const BOOL_FALSE: u8 = 2;
const BYTE: u8 = 3;
const I16: u8 = 4;
const I32: u8 = 5;
const I64: u8 = 6;
const DOUBLE: u8 = 7;
const BINARY: u8 = 8;
const LIST: u8 = 9;
const SET: u8 = 10;
const MAP: u8 = 11;
const STRUCT: u8 = 12;

/// What a field may be.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    I32,
    I64,
    Bool,
    Binary,
    Struct(&'static [(i16, Kind)]),
    List(&'static Kind),
}

/// A field's value as read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value<'a> {
    I32(i32),
    I64(i64),
    Bool(bool),
    Binary(&'a [u8]),
    Struct(Fields<'a>),
    List(Vec<Value<'a>>),
}

/// A struct's fields as read, in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Fields<'a>(pub Vec<(i16, Value<'a>)>);

impl<'a> Fields<'a> {
    pub fn get(&self, id: i16) -> Option<&Value<'a>> {
        self.0.iter().find(|(i, _)| *i == id).map(|(_, v)| v)
    }

    pub fn i32(&self, id: i16) -> Option<i32> {
        match self.get(id) {
            Some(Value::I32(v)) => Some(*v),
            _ => None,
        }
    }

    pub fn i64(&self, id: i16) -> Option<i64> {
        match self.get(id) {
            Some(Value::I64(v)) => Some(*v),
            _ => None,
        }
    }

    pub fn strukt(&self, id: i16) -> Option<&Fields<'a>> {
        match self.get(id) {
            Some(Value::Struct(v)) => Some(v),
            _ => None,
        }
    }

    pub fn list(&self, id: i16) -> Option<&[Value<'a>]> {
        match self.get(id) {
            Some(Value::List(v)) => Some(v),
            _ => None,
        }
    }
}

/// Reads one struct laid out as `spec` says from `bytes[at..]`; returns it
/// and where it ends.
pub(crate) fn read_struct<'a>(
    bytes: &'a [u8],
    at: usize,
    spec: &'static [(i16, Kind)],
) -> Result<(Fields<'a>, usize), String> {
    let mut r = Reader { b: bytes, at };
    let f = r.strukt(spec, 0)?;
    Ok((f, r.at))
}

/// Reads one struct that must fill `bytes` exactly.
pub(crate) fn read_exact<'a>(
    bytes: &'a [u8],
    spec: &'static [(i16, Kind)],
) -> Result<Fields<'a>, String> {
    let (f, end) = read_struct(bytes, 0, spec)?;
    match end == bytes.len() {
        true => Ok(f),
        false => Err(format!("{} bytes after its end", bytes.len() - end)),
    }
}

/// Walks a struct at `at` of whatever fields, keeping none: nesting at most
/// [`SKIM_DEPTH`] deep and no list, set or map declaring more elements than
/// bytes are left, so that a parser reading the same bytes after it cannot
/// be made to recurse or reserve without bound. Returns where the struct
/// ends and the value of its top-level integer field `capture`, if any.
pub(crate) fn skim_struct(
    bytes: &[u8],
    at: usize,
    capture: i16,
) -> Result<(usize, Option<i64>), String> {
    let mut r = Reader { b: bytes, at };
    let v = r.skim_fields(0, capture)?;
    Ok((r.at, v))
}

/// How deep [`skim_struct`] lets structs and lists nest.
pub(crate) const SKIM_DEPTH: u8 = 16;

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, String> {
        let v = *self.b.get(self.at).ok_or("cut short")?;
        self.at += 1;
        Ok(v)
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            if shift == 63 && b > 1 {
                return Err("varint too long".into());
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }

    fn i64(&mut self) -> Result<i64, String> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    fn i32(&mut self) -> Result<i32, String> {
        i32::try_from(self.i64()?).map_err(|_| "i32 out of range".into())
    }

    fn binary(&mut self) -> Result<&'a [u8], String> {
        let len = usize::try_from(self.varint()?).map_err(|_| "length")?;
        let end = self.at.checked_add(len).ok_or("length")?;
        let v = self.b.get(self.at..end).ok_or("cut short")?;
        self.at = end;
        Ok(v)
    }

    /// The next field's id and type after field `last`; `None` at the stop.
    fn field_header(&mut self, last: i16) -> Result<Option<(i16, u8)>, String> {
        let h = self.byte()?;
        if h == 0 {
            return Ok(None);
        }
        let (delta, ty) = (h >> 4, h & 0x0f);
        let id = match delta {
            0 => i16::try_from(self.i64()?).map_err(|_| "field id out of range")?,
            d => last
                .checked_add(i16::from(d))
                .ok_or("field id out of range")?,
        };
        Ok(Some((id, ty)))
    }

    fn skim_fields(&mut self, depth: u8, capture: i16) -> Result<Option<i64>, String> {
        if depth > SKIM_DEPTH {
            return Err("nested too deep".into());
        }
        let (mut last, mut got) = (0i16, None);
        loop {
            let Some((id, ty)) = self.field_header(last)? else {
                return Ok(got);
            };
            last = id;
            match ty {
                BOOL_TRUE | BOOL_FALSE => {}
                I16 | I32 | I64 => {
                    let v = self.i64()?;
                    if id == capture {
                        got = Some(v);
                    }
                }
                _ => self.skim_value(ty, depth)?,
            }
        }
    }

    /// Skips a value of compact type `ty` (a bool as a byte of its own, as
    /// in lists).
    fn skim_value(&mut self, ty: u8, depth: u8) -> Result<(), String> {
        if depth > SKIM_DEPTH {
            return Err("nested too deep".into());
        }
        let left = |r: &Self| r.b.len().saturating_sub(r.at) as u64;
        match ty {
            BOOL_TRUE | BOOL_FALSE | BYTE => {
                self.byte()?;
            }
            I16 | I32 | I64 => {
                self.varint()?;
            }
            DOUBLE => {
                self.at = self
                    .at
                    .checked_add(8)
                    .filter(|&e| e <= self.b.len())
                    .ok_or("cut short")?;
            }
            BINARY => {
                self.binary()?;
            }
            LIST | SET => {
                let h = self.byte()?;
                let n = match h >> 4 {
                    15 => self.varint()?,
                    n => u64::from(n),
                };
                if n > left(self) {
                    return Err(format!("a list of {n} elements in {} bytes", left(self)));
                }
                for _ in 0..n {
                    self.skim_value(h & 0x0f, depth + 1)?;
                }
            }
            MAP => {
                let n = self.varint()?;
                if n > 0 {
                    let kv = self.byte()?;
                    if n > left(self) {
                        return Err(format!("a map of {n} entries in {} bytes", left(self)));
                    }
                    for _ in 0..n {
                        self.skim_value(kv >> 4, depth + 1)?;
                        self.skim_value(kv & 0x0f, depth + 1)?;
                    }
                }
            }
            STRUCT => {
                self.skim_fields(depth + 1, -1)?;
            }
            other => return Err(format!("a value of unknown type {other}")),
        }
        Ok(())
    }

    fn strukt(&mut self, spec: &'static [(i16, Kind)], depth: u8) -> Result<Fields<'a>, String> {
        if depth > 4 {
            return Err("nested too deep".into());
        }
        let (mut last, mut out) = (0i16, Vec::new());
        loop {
            let Some((id, ty)) = self.field_header(last)? else {
                return Ok(Fields(out));
            };
            if id <= last {
                return Err(format!("field {id} out of order or repeated"));
            }
            last = id;
            let Some(&(_, kind)) = spec.iter().find(|(i, _)| *i == id) else {
                return Err(format!("field {id} is not one the writer writes"));
            };
            let v = match (kind, ty) {
                (Kind::Bool, BOOL_TRUE) => Value::Bool(true),
                (Kind::Bool, BOOL_FALSE) => Value::Bool(false),
                (Kind::I32, I32)
                | (Kind::I64, I64)
                | (Kind::Binary, BINARY)
                | (Kind::Struct(_), STRUCT)
                | (Kind::List(_), LIST) => self.value(kind, depth)?,
                _ => return Err(format!("field {id} tagged with type {ty}, not its own")),
            };
            out.push((id, v));
        }
    }

    /// A value of `kind` whose type tag was already read and matched.
    fn value(&mut self, kind: Kind, depth: u8) -> Result<Value<'a>, String> {
        Ok(match kind {
            Kind::I32 => Value::I32(self.i32()?),
            Kind::I64 => Value::I64(self.i64()?),
            Kind::Binary => Value::Binary(self.binary()?),
            Kind::Struct(inner) => Value::Struct(self.strukt(inner, depth + 1)?),
            // In a list a bool is a byte of its own (1 true, 2 false: what
            // parquet-rs writes; readers differ on other bytes).
            Kind::Bool => match self.byte()? {
                BOOL_TRUE => Value::Bool(true),
                BOOL_FALSE => Value::Bool(false),
                b => return Err(format!("bool byte {b}")),
            },
            Kind::List(elem) => {
                let h = self.byte()?;
                let (n, ty) = (h >> 4, h & 0x0f);
                let n = match n {
                    15 => usize::try_from(self.varint()?).map_err(|_| "list length")?,
                    n => usize::from(n),
                };
                let own = match elem {
                    Kind::Bool => ty == BOOL_TRUE || ty == BOOL_FALSE,
                    Kind::I32 => ty == I32,
                    Kind::I64 => ty == I64,
                    Kind::Binary => ty == BINARY,
                    Kind::Struct(_) => ty == STRUCT,
                    Kind::List(_) => ty == LIST,
                };
                if !own {
                    return Err(format!("list of type {ty}, not its own"));
                }
                // Every element takes at least a byte: a length cannot make
                // the reader reserve more than the bytes it reads.
                if n > self.b.len().saturating_sub(self.at) {
                    return Err("list longer than its bytes".into());
                }
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(*elem, depth + 1)?);
                }
                Value::List(items)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INNER: &[(i16, Kind)] = &[(1, Kind::I64)];
    const SPEC: &[(i16, Kind)] = &[
        (1, Kind::I32),
        (2, Kind::List(&Kind::Bool)),
        (3, Kind::List(&Kind::Struct(INNER))),
        (4, Kind::Binary),
    ];

    #[test]
    fn reads_what_the_writer_writes_and_nothing_else() {
        // 1: i32 3; 2: [true, false]; 3: [{1: -1}]; 4: "ab".
        let good = [
            0x15, 0x06, 0x19, 0x22, 0x01, 0x02, 0x19, 0x1c, 0x16, 0x01, 0x00, 0x18, 0x02, b'a',
            b'b', 0x00,
        ];
        let f = read_exact(&good, SPEC).unwrap();
        assert_eq!(f.i32(1), Some(3));
        assert_eq!(
            f.list(2),
            Some(&[Value::Bool(true), Value::Bool(false)][..])
        );
        let inner = match &f.list(3).unwrap()[0] {
            Value::Struct(s) => s.i64(1),
            _ => None,
        };
        assert_eq!(inner, Some(-1));
        assert_eq!(f.get(4), Some(&Value::Binary(&b"ab"[..])));
        let bad = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut b = good.to_vec();
            edit(&mut b);
            read_exact(&b, SPEC).unwrap_err()
        };
        assert!(bad(&|b| b[0] = 0x16).contains("tagged with type 6"));
        assert!(bad(&|b| b[4] = 0x00).contains("bool byte 0"));
        assert!(bad(&|b| b[3] = 0x25).contains("list of type 5"));
        assert!(bad(&|b| b.push(0)).contains("after its end"));
        assert!(bad(&|b| b[11] = 0x48).contains("not one the writer writes"));
        assert!(bad(&|b| b.truncate(13)).contains("cut short"));
        // A list claiming more elements than there are bytes.
        let long = bad(&|b| {
            b[3] = 0xf2;
            b[4] = 0x7f;
        });
        assert!(long.contains("longer than its bytes"), "{long}");
    }
}
