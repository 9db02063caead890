//! Integers as JSON Schema defines them: any number without a fractional part, so `576.0`
//! reads as `576`. The document says `integer`, and a client serializing from a float would
//! otherwise be refused for a value the document allows. A value outside the target type is
//! refused with serde's own words, which name the field.

use serde::Deserialize;
use serde::de::Error;

fn whole<E: Error>(n: &serde_json::Number) -> Result<i128, E> {
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
        .or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 1e30)
                .map(|f| f as i128)
        })
        .ok_or_else(|| E::custom(format!("invalid type: {n}, expected an integer")))
}

fn fit<T: TryFrom<i128>, E: Error>(v: i128) -> Result<T, E> {
    T::try_from(v).map_err(|_| {
        E::custom(format!(
            "invalid value: {v}, expected an integer in the range of {}",
            std::any::type_name::<T>()
        ))
    })
}

/// An integer field (`#[serde(deserialize_with = "crate::num::integer")]`).
pub(crate) fn integer<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i128>,
{
    let n = serde_json::Number::deserialize(d)?;
    fit(whole(&n)?)
}

/// An optional integer field (with `#[serde(default)]`).
pub(crate) fn integer_opt<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i128>,
{
    match Option::<serde_json::Number>::deserialize(d)? {
        None => Ok(None),
        Some(n) => fit(whole(&n)?).map(Some),
    }
}

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize, Debug)]
    struct T {
        #[serde(deserialize_with = "super::integer")]
        a: u32,
        #[serde(default, deserialize_with = "super::integer_opt")]
        b: Option<u64>,
    }

    #[test]
    fn whole_floats_read_as_integers_and_the_rest_are_refused() {
        let t: T = serde_json::from_str(r#"{"a": 1585.0, "b": 7}"#).unwrap();
        assert_eq!((t.a, t.b), (1585, Some(7)));
        for bad in [
            r#"{"a": 1.5}"#,
            r#"{"a": -1}"#,
            r#"{"a": 5e12}"#,
            r#"{"a": "1"}"#,
        ] {
            assert!(serde_json::from_str::<T>(bad).is_err(), "{bad}");
        }
    }
}
