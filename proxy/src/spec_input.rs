//! Reading an experiment from what a person wrote (the API's JSON, a TOML file): every wrong
//! field is reported at once, each in plain words ("must be a whole number ≥ 0, not -5"),
//! never as a Rust type name.

use caplab_shared::{ExperimentSpec, FieldError};
use serde_json::{Map, Value};

/// The spec in `value`, or one error per field that is missing, unknown or of the wrong kind.
pub fn spec_from_value(value: Value) -> Result<ExperimentSpec, Vec<FieldError>> {
    let Value::Object(mut object) = value else {
        return Err(vec![FieldError::new("spec", "the experiment must be an object of fields (JSON {…} or TOML key = value lines)")]);
    };
    let mut errors = ExperimentSpec::missing_required(|k| object.contains_key(k));
    // Each pass finds the first bad field; it is reported and taken out, and the rest is read
    // again, so every bad field is found (a spec has a few dozen fields at most).
    for _ in 0..=64 {
        match serde_path_to_error::deserialize::<_, ExperimentSpec>(Value::Object(object.clone())) {
            Ok(spec) if errors.is_empty() => return Ok(spec),
            Ok(rest) => {
                // The fields that did read are checked too, so one answer names every problem.
                let more: Vec<FieldError> = rest.validate().into_iter().filter(|e| !errors.iter().any(|x| x.field == e.field)).collect();
                errors.extend(more);
                return Err(errors);
            }
            Err(e) => {
                let path: Vec<String> = e.path().iter().map(|s| s.to_string()).collect();
                let in_list = path.last().is_some_and(|p| p.starts_with('['));
                let keys: Vec<&str> = path.iter().map(String::as_str).filter(|p| !p.starts_with('[')).collect();
                let field = if keys.is_empty() { "spec".to_string() } else { keys.join(".") };
                errors.push(FieldError::new(&field, humanize(&e.into_inner().to_string(), in_list)));
                if keys.is_empty() || !remove(&mut object, &keys) {
                    return Err(errors);
                }
            }
        }
    }
    Err(errors)
}

/// Removes `object.a.b…`; false when it was not there (nothing more can be learnt).
fn remove(object: &mut Map<String, Value>, keys: &[&str]) -> bool {
    match keys {
        [] => false,
        [last] => object.remove(*last).is_some(),
        [first, rest @ ..] => match object.get_mut(*first) {
            Some(Value::Object(inner)) => remove(inner, rest),
            _ => object.remove(*first).is_some(),
        },
    }
}

/// serde's message in a person's words.
fn humanize(message: &str, in_list: bool) -> String {
    let message = message.split(" at line ").next().unwrap_or(message);
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let name = rest.split('`').next().unwrap_or(rest);
        let known = rest.split_once("expected one of ").map(|(_, k)| k.replace('`', "")).unwrap_or_default();
        return format!("{name:?} is not a field of an experiment; the fields are: {known}");
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        let name = rest.split('`').next().unwrap_or(rest);
        let known = rest.split_once("expected ").map(|(_, k)| k.replace('`', "")).unwrap_or_default();
        return format!("{name:?} is not one of: {known}");
    }
    let body = message.strip_prefix("invalid type: ").or_else(|| message.strip_prefix("invalid value: "));
    let Some((got, expected)) = body.and_then(|b| b.split_once(", expected ")) else {
        return message.to_string();
    };
    let expected = match expected {
        "u32" | "u64" | "usize" => "a whole number ≥ 0".to_string(),
        "f64" | "f32" => "a number".to_string(),
        "a boolean" => "true or false".to_string(),
        "a sequence" => "a list, e.g. [8, 16]".to_string(),
        "a string" => "text".to_string(),
        other => other.to_string(),
    };
    let got = match got.split_once(' ') {
        Some(("integer" | "floating", v)) => v.trim_start_matches("point ").trim_matches('`').to_string(),
        Some(("string", v)) => format!("the text {v}"),
        Some(("boolean", v)) => v.trim_matches('`').to_string(),
        _ => match got {
            "sequence" => "a list".to_string(),
            "map" => "a group of fields".to_string(),
            "null" => "empty (null)".to_string(),
            other => other.to_string(),
        },
    };
    let subject = if in_list { "each value must be" } else { "must be" };
    if expected == "a whole number ≥ 0" && got.parse::<u64>().is_ok() {
        return format!("{subject} at most {}, not {got}", u32::MAX);
    }
    format!("{subject} {expected}, not {got}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors(v: Value) -> Vec<(String, String)> {
        spec_from_value(v).unwrap_err().into_iter().map(|e| (e.field, e.message)).collect()
    }

    #[test]
    fn every_bad_field_is_reported_in_words() {
        let e = errors(json!({"workload": "chat", "concurrency": [8, -5], "max_new_tokens": "lots", "timeout_s": "x", "slo": {"e2e_ms": true}}));
        assert_eq!(
            e,
            vec![
                ("concurrency".into(), "each value must be a whole number ≥ 0, not -5".into()),
                ("max_new_tokens".into(), "must be a list, e.g. [8, 16], not the text \"lots\"".into()),
                ("slo.e2e_ms".into(), "must be a number, not true".into()),
                ("timeout_s".into(), "must be a number, not the text \"x\"".into()),
            ]
        );
    }

    #[test]
    fn unknown_names_list_the_valid_ones_and_missing_fields_are_named() {
        // Fields are read in name order.
        let e = errors(json!({"workload": "video", "bogus": 1, "requests": 1.5}));
        assert_eq!(e[0].0, "bogus");
        assert!(e[0].1.starts_with("\"bogus\" is not a field of an experiment; the fields are: name, workload"), "{}", e[0].1);
        assert_eq!(e[1], ("requests".into(), "must be a whole number ≥ 0, not 1.5".into()));
        assert_eq!(e[2], ("workload".into(), "\"video\" is not one of: chat or batch".into()));
        let e = errors(json!({"workload": "chat", "requests": 5_000_000_000u64}));
        assert_eq!(e[0], ("requests".into(), "must be at most 4294967295, not 5000000000".into()));
        let e = errors(json!({"concurrency": [4]}));
        assert_eq!(e[0].0, "workload");
        assert_eq!(errors(json!([1]))[0].0, "spec");
    }

    #[test]
    fn type_errors_and_value_errors_come_together() {
        let e = errors(json!({"workload": "chat", "concurrency": [-5], "timeout_s": 0}));
        assert_eq!(e.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>(), vec!["concurrency", "timeout_s"]);
    }

    #[test]
    fn a_good_spec_reads() {
        let spec = spec_from_value(json!({"workload": "chat", "concurrency": [4], "slo": {"e2e_ms": 2000}})).unwrap();
        assert_eq!(spec.concurrency, vec![4]);
        assert_eq!(spec.slo.e2e_ms, Some(2000.0));
    }
}
