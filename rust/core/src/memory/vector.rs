//! pgvector's `vector` as a parameter: its binary format (`int16` dimension, `int16` unused,
//! big-endian `float4`s), exact and a third of the size of a text literal.

use bytes::{BufMut, BytesMut};
use postgres_types::{to_sql_checked, IsNull, ToSql, Type};

use crate::error::{ErrorKind, Result, StoreError};

type BoxError = Box<dyn std::error::Error + Sync + Send>;

/// A pgvector `vector` parameter, sent in pgvector's binary format.
#[derive(Debug, Clone, Copy)]
pub struct VectorParam<'a>(pub &'a [f32]);

impl ToSql for VectorParam<'_> {
    fn to_sql(&self, _ty: &Type, out: &mut BytesMut) -> std::result::Result<IsNull, BoxError> {
        encode_vector(self.0, out)?;
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        ty.name() == "vector"
    }

    to_sql_checked!();
}

/// pgvector's binary `vector` format: dimension (int16), unused (int16), big-endian floats.
pub fn encode_vector(v: &[f32], out: &mut BytesMut) -> std::result::Result<(), BoxError> {
    let dim = i16::try_from(v.len()).map_err(|_| "vector has too many dimensions")?;
    out.reserve(4 + 4 * v.len());
    out.put_i16(dim);
    out.put_i16(0);
    for x in v {
        out.put_f32(*x);
    }
    Ok(())
}

/// Checks an embedding before it is sent: pgvector rejects NaN and infinities; a zero vector
/// has no direction (its cosine distance is NaN), so it is stored as "no embedding".
pub fn check_vector(v: &[f32]) -> Result<bool> {
    if v.is_empty() || v.len() > 16000 {
        return Err(StoreError::new(
            ErrorKind::Data,
            format!(
                "an embedding must have 1 to 16000 dimensions, not {}",
                v.len()
            ),
        ));
    }
    if v.iter().any(|x| !x.is_finite()) {
        return Err(StoreError::new(
            ErrorKind::Data,
            "an embedding contains NaN or an infinity",
        ));
    }
    Ok(v.iter().any(|x| *x != 0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_use_pgvector_binary_format() {
        let mut out = BytesMut::new();
        encode_vector(&[1.0, -2.5], &mut out).unwrap();
        assert_eq!(
            &out[..],
            &[0, 2, 0, 0, 0x3f, 0x80, 0, 0, 0xc0, 0x20, 0, 0][..]
        );
        assert!(<VectorParam as ToSql>::accepts(&Type::new(
            "vector".into(),
            99999,
            postgres_types::Kind::Simple,
            "public".into()
        )));
        assert!(!<VectorParam as ToSql>::accepts(&Type::FLOAT4_ARRAY));
    }

    #[test]
    fn bad_vectors_are_rejected_and_zero_vectors_flagged() {
        assert!(check_vector(&[f32::NAN]).is_err());
        assert!(check_vector(&[f32::INFINITY, 1.0]).is_err());
        assert!(check_vector(&[]).is_err());
        assert!(!check_vector(&[0.0, 0.0]).unwrap());
        assert!(check_vector(&[0.0, 0.1]).unwrap());
    }
}
