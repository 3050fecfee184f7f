//! Index range expressions: equality on a prefix of an index's fields, then optional lower and
//! upper bounds on the next field. Each becomes one byte range of index keys.

use super::catalog::IndexInfo;
use super::engine::KeyRange;
use super::error::StoreError;
use ferrovex_model::{key, Value};
use std::ops::Bound;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct IndexRange {
    pub eq: Vec<Value>,
    /// Bound on the field after the equality prefix, and whether it is inclusive.
    pub lower: Option<(Value, bool)>,
    pub upper: Option<(Value, bool)>,
}

impl IndexRange {
    /// Every document of the index.
    pub fn all() -> Self {
        Self::default()
    }

    pub fn eq(mut self, value: impl Into<Value>) -> Self {
        self.eq.push(value.into());
        self
    }

    pub fn gt(mut self, value: impl Into<Value>) -> Self {
        self.lower = Some((value.into(), false));
        self
    }

    pub fn gte(mut self, value: impl Into<Value>) -> Self {
        self.lower = Some((value.into(), true));
        self
    }

    pub fn lt(mut self, value: impl Into<Value>) -> Self {
        self.upper = Some((value.into(), false));
        self
    }

    pub fn lte(mut self, value: impl Into<Value>) -> Self {
        self.upper = Some((value.into(), true));
        self
    }

    /// The byte range of index keys this expression selects in `index`.
    pub fn to_key_range(&self, table: &str, index: &IndexInfo) -> Result<KeyRange, StoreError> {
        let invalid = |reason: String| StoreError::InvalidRange {
            table: table.to_owned(),
            index: index.name.clone(),
            reason,
        };
        let bounded = self.lower.is_some() || self.upper.is_some();
        let used = self.eq.len() + bounded as usize;
        if used > index.fields.len() {
            return Err(invalid(format!(
                "the index has {} field(s) {:?}, the range constrains {used}",
                index.fields.len(),
                index.fields
            )));
        }
        let mut prefix = index.id.to_be_bytes().to_vec();
        for value in &self.eq {
            key::encode_into(value, &mut prefix);
        }
        let with = |value: &Value| {
            let mut k = prefix.clone();
            key::encode_into(value, &mut k);
            k
        };
        let successor = |k: &[u8]| {
            key::prefix_successor(k).ok_or_else(|| invalid("range bound has no successor".into()))
        };
        let start = match &self.lower {
            Some((v, true)) => Bound::Included(with(v)),
            Some((v, false)) => Bound::Included(successor(&with(v))?),
            None => Bound::Included(prefix.clone()),
        };
        let end = match &self.upper {
            Some((v, true)) => Bound::Excluded(successor(&with(v))?),
            Some((v, false)) => Bound::Excluded(with(v)),
            None => Bound::Excluded(successor(&prefix)?),
        };
        Ok(KeyRange { start, end })
    }
}
