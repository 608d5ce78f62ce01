//! Plain objects: values resolved in one synchronous pass over their selection.
//!
//! async-graphql resolves every field of every object as its own boxed future, polled through a
//! `FuturesUnordered`: about a microsecond a field, which is most of a recap page's time (100
//! orders of 10 lines are some 4,000 fields; ADR 0007). A type whose fields are plain data (no
//! arguments, no I/O, no errors) implements [`PlainObject`] and is served as [`Plain<T>`]: the
//! same GraphQL type (the schema is still `T`'s derived one), resolved without futures.
//!
//! The selection is walked as async-graphql does: fields by response key (alias or name),
//! fragment spreads and inline fragments flattened, fields asked twice merged, `__typename`
//! answered. `@skip`/`@include` are already applied when execution starts, and the schema has no
//! other directive. A test resolves every field of each plain type both ways and compares.

use std::borrow::Cow;
use std::collections::HashMap;

use async_graphql::indexmap::IndexMap;
use async_graphql::parser::types::{Field, FragmentDefinition, Selection, SelectionSet};
use async_graphql::registry::Registry;
use async_graphql::{
    ContextSelectionSet, Name, OutputType, Positioned, ServerError, ServerResult, Value,
};

/// A type whose fields are plain data, resolvable without futures.
pub trait PlainObject: OutputType {
    /// The value of the field `name` (its schema name); `sub` is that field's own selection,
    /// for fields that are objects or lists of objects. `None`: not a field of this type.
    fn field_value(&self, name: &str, sub: Sel<'_>) -> Option<Value>;
}

/// A selection set being resolved, with the request's fragments.
#[derive(Clone, Copy)]
pub struct Sel<'a> {
    set: &'a SelectionSet,
    fragments: &'a HashMap<Name, Positioned<FragmentDefinition>>,
}

impl<'a> Sel<'a> {
    /// Calls `f` on every field of the selection, fragments flattened, in query order.
    fn each_field(&self, set: &'a SelectionSet, f: &mut impl FnMut(&'a Field)) {
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => f(&field.node),
                Selection::FragmentSpread(spread) => {
                    if let Some(def) = self.fragments.get(&spread.node.fragment_name.node) {
                        self.each_field(&def.node.selection_set.node, f);
                    }
                }
                Selection::InlineFragment(inline) => {
                    self.each_field(&inline.node.selection_set.node, f)
                }
            }
        }
    }

    fn of(&self, field: &'a Field) -> Sel<'a> {
        Sel {
            set: &field.selection_set.node,
            fragments: self.fragments,
        }
    }
}

/// `item` as a GraphQL object over `sel`.
pub fn object<T: PlainObject + ?Sized>(item: &T, sel: Sel<'_>) -> ServerResult<Value> {
    let mut map = IndexMap::with_capacity(sel.set.items.len());
    let mut missing = None;
    sel.each_field(sel.set, &mut |field| {
        let name = field.name.node.as_str();
        let value = if name == "__typename" {
            Some(Value::String(T::type_name().into_owned()))
        } else {
            item.field_value(name, sel.of(field))
        };
        match value {
            Some(v) => insert_value(&mut map, field.response_key().node.clone(), v),
            None => missing = Some(name.to_string()),
        }
    });
    if let Some(name) = missing {
        // Unreachable for a validated query unless a field was added to the type and not to its
        // `field_value`; the plain-object test guards against that.
        return Err(ServerError::new(
            format!("field {name} of {} is not resolvable", T::type_name()),
            None,
        ));
    }
    Ok(Value::Object(map))
}

/// `items` as a GraphQL list of objects over `sel`.
pub fn list<T: PlainObject>(items: &[T], sel: Sel<'_>) -> ServerResult<Value> {
    items
        .iter()
        .map(|i| object(i, sel))
        .collect::<ServerResult<Vec<_>>>()
        .map(Value::List)
}

/// Fields asked twice under one key are merged, objects field by field, lists item by item.
fn insert_value(target: &mut IndexMap<Name, Value>, name: Name, value: Value) {
    use async_graphql::indexmap::map::Entry;
    let prev = match target.entry(name) {
        Entry::Vacant(e) => {
            e.insert(value);
            return;
        }
        Entry::Occupied(e) => e.into_mut(),
    };
    match prev {
        Value::Object(prev) => {
            if let Value::Object(obj) = value {
                for (k, v) in obj {
                    insert_value(prev, k, v);
                }
            }
        }
        Value::List(prev) => {
            if let Value::List(list) = value {
                for (p, v) in prev.iter_mut().zip(list) {
                    if let (Value::Object(p), Value::Object(obj)) = (p, v) {
                        for (k, v) in obj {
                            insert_value(p, k, v);
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

/// `T`, resolved as a [`PlainObject`]: same GraphQL type, no future per field.
pub struct Plain<T>(pub T);

impl<T: PlainObject + Send + Sync> OutputType for Plain<T> {
    fn type_name() -> Cow<'static, str> {
        T::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        T::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        _field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        object(
            &self.0,
            Sel {
                set: &ctx.item.node,
                fragments: &ctx.query_env.fragments,
            },
        )
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! The equivalence check used by every plain type's test.

    use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};

    use super::*;

    /// Every field of `T` (its schema's), with their sub-selections spelled out to the leaves.
    fn selection<T: OutputType>(registry: &Registry, type_name: &str, depth: usize) -> String {
        let ty = &registry.types[type_name];
        let mut out = String::new();
        for (name, field) in ty.fields().into_iter().flatten() {
            let inner = field
                .ty
                .trim_matches(|c| c == '[' || c == ']' || c == '!')
                .to_string();
            out.push_str(name);
            if registry.types[&inner].fields().is_some() && depth < 4 {
                out.push_str(&format!(
                    " {{ {} }}",
                    selection::<T>(registry, &inner, depth + 1)
                ));
            }
            out.push(' ');
        }
        out
    }

    struct Both<T>(Vec<T>);

    #[Object]
    impl<T: PlainObject + Clone + Send + Sync + 'static> Both<T> {
        async fn derived(&self) -> Vec<T> {
            self.0.clone()
        }
        async fn plain(&self) -> Vec<Plain<T>> {
            self.0.iter().cloned().map(Plain).collect()
        }
    }

    /// Resolves `items` through async-graphql's own resolvers and as [`Plain`], with every field
    /// of the type, an alias, fragments, a field asked twice, `__typename` and `@skip`, and
    /// asserts both answers are the same JSON.
    pub(crate) async fn assert_same_as_derived<T>(items: Vec<T>)
    where
        T: PlainObject + Clone + Send + Sync + 'static,
    {
        let schema = Schema::new(Both(items), EmptyMutation, EmptySubscription);
        let registry = {
            let mut r = Registry::default();
            T::create_type_info(&mut r);
            r
        };
        let name = T::type_name();
        let all = selection::<T>(&registry, &name, 0);
        let first = registry.types[name.as_ref()]
            .fields()
            .and_then(|f| f.keys().next().cloned())
            .expect("a field");
        let query = format!(
            "query($no: Boolean!) {{ \
               derived {{ __typename ...All again: {first} ... on {name} {{ {all} }} {first} @skip(if: $no) }} \
               plain {{ __typename ...All again: {first} ... on {name} {{ {all} }} {first} @skip(if: $no) }} \
             }} fragment All on {name} {{ {all} }}"
        );
        let response = schema
            .execute(async_graphql::Request::new(query.clone()).variables(
                async_graphql::Variables::from_json(serde_json::json!({"no": true})),
            ))
            .await;
        assert!(response.errors.is_empty(), "{query}: {:?}", response.errors);
        let Value::Object(data) = response.data else {
            panic!("no data")
        };
        let (derived, plain) = (&data["derived"], &data["plain"]);
        assert!(
            matches!(derived, Value::List(l) if !l.is_empty()),
            "no items to compare: {derived}"
        );
        // Written as JSON, keys in the order the server writes them (clients may rely on it).
        assert_eq!(
            serde_json::to_string(derived).expect("json"),
            serde_json::to_string(plain).expect("json"),
            "{query}"
        );
    }
}
