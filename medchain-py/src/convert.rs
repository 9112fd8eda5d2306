//! Conversions between Python objects and JSON values, and argument helpers.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString};
use serde_json::Value;

use crate::errors::{Error, Kind, Result};

/// A JSON value as a Python object (dict, list, str, int, float, bool, None).
pub fn value_to_py(py: Python<'_>, v: &Value) -> Result<Py<PyAny>> {
    Ok(match v {
        Value::Null => py.None(),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any().unbind(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any().unbind()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any().unbind()
            } else {
                n.as_f64()
                    .unwrap_or(f64::NAN)
                    .into_pyobject(py)?
                    .into_any()
                    .unbind()
            }
        }
        Value::String(s) => PyString::new(py, s).into_any().unbind(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(value_to_py(py, item)?)?;
            }
            list.into_any().unbind()
        }
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (k, item) in map {
                dict.set_item(k, value_to_py(py, item)?)?;
            }
            dict.into_any().unbind()
        }
    })
}

/// A JSON document given as a `dict` or as JSON text (`str` or `bytes`) read as a value.
/// `what` names the argument in messages.
pub fn json_arg(obj: &Bound<'_, PyAny>, what: &str) -> Result<Value> {
    let text: String = if let Ok(s) = obj.cast::<PyString>() {
        s.extract::<String>()?
    } else if let Ok(b) = obj.cast::<PyBytes>() {
        String::from_utf8(b.as_bytes().to_vec())
            .map_err(|_| Error::new(Kind::NotFhir, format!("{what} is not UTF-8 JSON")))?
    } else if obj.is_instance_of::<PyDict>() {
        let json = obj.py().import("json")?;
        json.call_method1("dumps", (obj,))
            .map_err(|e| {
                Error::new(
                    Kind::NotFhir,
                    format!("{what} cannot be written as JSON: {e}"),
                )
            })?
            .extract::<String>()?
    } else {
        return Err(wrong_type(obj, what, "a dict or a JSON string"));
    };
    serde_json::from_str(&text)
        .map_err(|e| Error::new(Kind::NotFhir, format!("{what} is not valid JSON: {e}")))
}

/// A `WrongType` error for `obj` given as `what` where `expected` was wanted.
pub fn wrong_type(obj: &Bound<'_, PyAny>, what: &str, expected: &str) -> Error {
    let got = obj
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into());
    Error::new(
        Kind::WrongType,
        format!("{what} must be {expected}, not {got}"),
    )
}

/// Bytes from `bytes`, `bytearray` or `str` (UTF-8), for passwords and passphrases.
pub fn secret_arg(obj: &Bound<'_, PyAny>, what: &str) -> Result<Vec<u8>> {
    if let Ok(s) = obj.cast::<PyString>() {
        Ok(s.extract::<String>()?.into_bytes())
    } else if let Ok(b) = obj.extract::<Vec<u8>>() {
        if obj.is_instance_of::<PyList>() {
            return Err(wrong_type(obj, what, "str or bytes"));
        }
        Ok(b)
    } else {
        Err(wrong_type(obj, what, "str or bytes"))
    }
}

/// Raw bytes (`bytes` or `bytearray`).
pub fn bytes_arg(obj: &Bound<'_, PyAny>, what: &str) -> Result<Vec<u8>> {
    if obj.is_instance_of::<PyString>() || obj.is_instance_of::<PyList>() {
        return Err(wrong_type(obj, what, "bytes"));
    }
    obj.extract::<Vec<u8>>()
        .map_err(|_| wrong_type(obj, what, "bytes"))
}

/// A non-negative integer argument.
pub fn u64_arg(obj: &Bound<'_, PyAny>, what: &str) -> Result<u64> {
    if obj.is_instance_of::<PyBool>() || !obj.is_instance_of::<PyInt>() {
        return Err(wrong_type(obj, what, "an int"));
    }
    obj.extract::<u64>().map_err(|_| {
        Error::new(
            Kind::InvalidArgument,
            format!("{what} must be a non-negative integer below 2**64"),
        )
    })
}

/// A float column value.
pub fn float_or_none(py: Python<'_>, v: Option<f64>) -> Result<Py<PyAny>> {
    Ok(match v {
        Some(x) => PyFloat::new(py, x).into_any().unbind(),
        None => py.None(),
    })
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
