//! State updates and the reducers that merge them into a run's state.
//!
//! A run's state is the application's own type, kept between steps as a JSON object so
//! that it can be merged field by field, checkpointed and shown. Nodes never mutate the
//! state: they return an [`Update`] naming the fields they change, and the field's
//! [`Reducer`] decides how the new value combines with the old one.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::RunError;

/// What a state type must be: owned, cloneable, serializable to a JSON object.
///
/// Implemented for every type that qualifies; there is nothing to implement by hand.
/// Serialize every field (avoid `skip_serializing_if`), so that updates to a misspelt
/// field are caught as errors instead of silently ignored.
pub trait State: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {}

impl<T> State for T where T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {}

/// The fields a node changes, with their new values (before reducers apply).
///
/// ```
/// use graphloop_core::Update;
/// let update = Update::new().set("score", 7).set("findings", vec!["late payment"]);
/// assert_eq!(update.fields().count(), 2);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Update {
    fields: Map<String, Value>,
    /// A value that failed to serialize; reported when the update is merged, so that
    /// building an update never panics and never loses the reason.
    invalid: Option<String>,
}

impl Update {
    /// An update that changes nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `field` to `value` (the field's reducer decides how it merges).
    #[must_use]
    pub fn set(mut self, field: impl Into<String>, value: impl Serialize) -> Self {
        let field = field.into();
        match serde_json::to_value(value) {
            Ok(value) => {
                self.fields.insert(field, value);
            }
            Err(err) => self.invalid = Some(format!("field `{field}`: {err}")),
        }
        self
    }

    /// An update made of every field of `partial`, a struct or map that serializes to a
    /// JSON object (for instance a struct of `Option`s with `skip_serializing_if`).
    pub fn from_serialize(partial: &impl Serialize) -> Self {
        match serde_json::to_value(partial) {
            Ok(Value::Object(fields)) => Self { fields, invalid: None },
            Ok(other) => Self {
                fields: Map::new(),
                invalid: Some(format!("an update must serialize to a JSON object, not {other}")),
            },
            Err(err) => Self { fields: Map::new(), invalid: Some(err.to_string()) },
        }
    }

    /// The fields this update sets, in the order they were set.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.fields.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Whether the update sets no field.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.invalid.is_none()
    }

    /// The update as a JSON object (for checkpoints and events).
    pub fn to_json(&self) -> Value {
        Value::Object(self.fields.clone())
    }

    /// Rebuilds an update from [`Update::to_json`]'s output.
    pub fn from_json(value: Value) -> Self {
        Self::from_serialize(&value)
    }
}

type ReduceFn = dyn Fn(Value, Value) -> Result<Value, String> + Send + Sync;

/// How a field's new value combines with its current one.
///
/// - [`Reducer::last_value`] (the default): the update replaces the value; two tasks of
///   one step writing the field is an error naming both.
/// - [`Reducer::append`]: arrays concatenate (a non-array update is pushed as one item);
///   parallel writers are merged in the step's deterministic task order.
/// - [`Reducer::merge`] / [`Reducer::custom`]: any function of (current, update).
#[derive(Clone)]
pub struct Reducer(ReducerKind);

#[derive(Clone)]
enum ReducerKind {
    LastValue,
    Append,
    Custom(Arc<ReduceFn>),
}

impl Reducer {
    /// The update replaces the current value; concurrent writers conflict.
    pub fn last_value() -> Self {
        Self(ReducerKind::LastValue)
    }

    /// Arrays concatenate; a non-array update is pushed as a single item.
    pub fn append() -> Self {
        Self(ReducerKind::Append)
    }

    /// A typed merge function: `merge(current, update) -> new`, e.g. a running sum.
    ///
    /// A value that does not deserialize as `T` fails the run with an error naming the
    /// node that wrote it.
    pub fn merge<T, F>(merge: F) -> Self
    where
        T: Serialize + DeserializeOwned,
        F: Fn(T, T) -> T + Send + Sync + 'static,
    {
        Self::custom(move |current, update| {
            let current: T = serde_json::from_value(current).map_err(|e| format!("current value: {e}"))?;
            let update: T = serde_json::from_value(update).map_err(|e| format!("update value: {e}"))?;
            serde_json::to_value(merge(current, update)).map_err(|e| e.to_string())
        })
    }

    /// A merge function over raw JSON values, which may refuse an update with a reason.
    pub fn custom<F>(reduce: F) -> Self
    where
        F: Fn(Value, Value) -> Result<Value, String> + Send + Sync + 'static,
    {
        Self(ReducerKind::Custom(Arc::new(reduce)))
    }

    fn is_last_value(&self) -> bool {
        matches!(self.0, ReducerKind::LastValue)
    }

    fn reduce(&self, current: Value, update: Value) -> Result<Value, String> {
        match &self.0 {
            ReducerKind::LastValue => Ok(update),
            ReducerKind::Append => {
                let mut items = match current {
                    Value::Array(items) => items,
                    Value::Null => Vec::new(),
                    other => return Err(format!("append needs an array field, found {other}")),
                };
                match update {
                    Value::Array(more) => items.extend(more),
                    one => items.push(one),
                }
                Ok(Value::Array(items))
            }
            ReducerKind::Custom(reduce) => reduce(current, update),
        }
    }
}

impl Default for Reducer {
    fn default() -> Self {
        Self::last_value()
    }
}

impl fmt::Debug for Reducer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            ReducerKind::LastValue => f.write_str("Reducer::last_value"),
            ReducerKind::Append => f.write_str("Reducer::append"),
            ReducerKind::Custom(_) => f.write_str("Reducer::custom"),
        }
    }
}

/// The reducers of one graph: one per named field, and a default for the rest.
#[derive(Debug, Clone, Default)]
pub(crate) struct Reducers {
    pub(crate) by_field: HashMap<String, Reducer>,
    pub(crate) default: Reducer,
}

impl Reducers {
    fn for_field(&self, field: &str) -> &Reducer {
        self.by_field.get(field).unwrap_or(&self.default)
    }

    /// Applies one step's updates to `state`, in the order given (the step's task order).
    ///
    /// `writer` labels each update for error messages (node name, with the invocation
    /// index for fan-out tasks). On error the state is left partially merged; callers
    /// discard it (a failed step never commits).
    pub(crate) fn merge<'a>(
        &self,
        state: &mut Map<String, Value>,
        step: u64,
        updates: impl IntoIterator<Item = (String, &'a Update)>,
    ) -> Result<(), RunError> {
        let mut last_writer: HashMap<&'a str, String> = HashMap::new();
        for (writer, update) in updates {
            if let Some(reason) = &update.invalid {
                return Err(RunError::InvalidUpdate { node: writer, reason: reason.clone() });
            }
            for (field, value) in &update.fields {
                let Some(current) = state.get_mut(field) else {
                    return Err(RunError::InvalidUpdate {
                        node: writer,
                        reason: format!("the state has no field `{field}`"),
                    });
                };
                let reducer = self.for_field(field);
                if reducer.is_last_value() {
                    if let Some(first) = last_writer.insert(field.as_str(), writer.clone()) {
                        return Err(RunError::ConflictingUpdate { field: field.clone(), first, second: writer, step });
                    }
                }
                let merged = reducer.reduce(current.take(), value.clone()).map_err(|reason| {
                    RunError::InvalidUpdate { node: writer.clone(), reason: format!("field `{field}`: {reason}") }
                })?;
                *current = merged;
            }
        }
        Ok(())
    }
}

/// Serializes a state value to the JSON object the engine merges into.
pub(crate) fn to_object<S: Serialize>(state: &S) -> Result<Map<String, Value>, RunError> {
    match serde_json::to_value(state) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(RunError::State {
            reason: format!("the state must serialize to a JSON object (a struct or map), not {other}"),
        }),
        Err(err) => Err(RunError::State { reason: err.to_string() }),
    }
}

/// Rebuilds the typed state from its JSON object.
pub(crate) fn from_object<S: DeserializeOwned>(state: &Map<String, Value>) -> Result<S, RunError> {
    S::deserialize(state).map_err(|err| RunError::State { reason: err.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    fn merge(reducers: &Reducers, state: Value, updates: &[(&str, Update)]) -> Result<Value, RunError> {
        let mut state = object(state);
        reducers.merge(&mut state, 1, updates.iter().map(|(w, u)| (w.to_string(), u)))?;
        Ok(Value::Object(state))
    }

    #[test]
    fn last_value_replaces() {
        let merged = merge(&Reducers::default(), json!({"a": 1, "b": 2}), &[("n", Update::new().set("a", 5))]);
        assert_eq!(merged, Ok(json!({"a": 5, "b": 2})));
    }

    #[test]
    fn two_writers_of_a_last_value_field_conflict_and_are_both_named() {
        let err = merge(
            &Reducers::default(),
            json!({"a": 1}),
            &[("left", Update::new().set("a", 2)), ("right", Update::new().set("a", 3))],
        )
        .unwrap_err();
        assert_eq!(
            err,
            RunError::ConflictingUpdate { field: "a".into(), first: "left".into(), second: "right".into(), step: 1 }
        );
        assert!(err.to_string().contains("`left`") && err.to_string().contains("`right`"));
    }

    #[test]
    fn append_concatenates_in_the_given_order() {
        let mut reducers = Reducers::default();
        reducers.by_field.insert("log".into(), Reducer::append());
        let merged = merge(
            &reducers,
            json!({"log": ["x"]}),
            &[("b", Update::new().set("log", vec!["b1", "b2"])), ("a", Update::new().set("log", "a1"))],
        );
        assert_eq!(merged, Ok(json!({"log": ["x", "b1", "b2", "a1"]})));
    }

    #[test]
    fn append_treats_null_as_empty_and_refuses_scalars() {
        let mut reducers = Reducers::default();
        reducers.by_field.insert("log".into(), Reducer::append());
        assert_eq!(
            merge(&reducers, json!({"log": null}), &[("n", Update::new().set("log", 1))]),
            Ok(json!({"log": [1]}))
        );
        let err = merge(&reducers, json!({"log": 3}), &[("n", Update::new().set("log", 1))]).unwrap_err();
        assert!(matches!(err, RunError::InvalidUpdate { node, .. } if node == "n"));
    }

    #[test]
    fn typed_merge_function_sums() {
        let mut reducers = Reducers::default();
        reducers.by_field.insert("total".into(), Reducer::merge(|a: u64, b: u64| a + b));
        let merged = merge(
            &reducers,
            json!({"total": 1}),
            &[("a", Update::new().set("total", 2)), ("b", Update::new().set("total", 3))],
        );
        assert_eq!(merged, Ok(json!({"total": 6})));
        let err = merge(&reducers, json!({"total": 1}), &[("a", Update::new().set("total", "x"))]).unwrap_err();
        assert!(err.to_string().contains("update value"), "{err}");
    }

    #[test]
    fn a_default_reducer_applies_to_every_field_without_its_own() {
        let reducers = Reducers { by_field: HashMap::new(), default: Reducer::append() };
        let merged = merge(
            &reducers,
            json!({"a": [], "b": []}),
            &[("x", Update::new().set("a", 1)), ("y", Update::new().set("a", 2).set("b", 3))],
        );
        assert_eq!(merged, Ok(json!({"a": [1, 2], "b": [3]})));
    }

    #[test]
    fn unknown_fields_are_refused_with_the_writer_named() {
        let err = merge(&Reducers::default(), json!({"a": 1}), &[("n", Update::new().set("typo", 1))]).unwrap_err();
        assert_eq!(err, RunError::InvalidUpdate { node: "n".into(), reason: "the state has no field `typo`".into() });
    }

    #[test]
    fn updates_that_are_not_objects_are_reported_not_panicked() {
        let err = merge(&Reducers::default(), json!({"a": 1}), &[("n", Update::from_serialize(&3))]).unwrap_err();
        assert!(matches!(err, RunError::InvalidUpdate { node, .. } if node == "n"));
    }
}
