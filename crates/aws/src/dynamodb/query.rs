//! Paging shared by the stores: newest first over a key range, every item of a Query, and a
//! Query's count.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, Select};

use super::unavailable;
use relay_core::Result;

pub type Item = HashMap<String, AttributeValue>;

/// Every item `query` matches, page after page.
pub async fn all_items(query: QueryFluentBuilder) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let output = query.clone().set_exclusive_start_key(start.take()).send().await.map_err(unavailable)?;
        items.extend(output.items().iter().cloned());
        start = output.last_evaluated_key().cloned();
        if start.is_none() {
            return Ok(items);
        }
    }
}

/// How many items `query` matches (`Select::Count`, page after page).
pub async fn count(query: QueryFluentBuilder) -> Result<u64> {
    let query = query.select(Select::Count);
    let mut count = 0u64;
    let mut start = None;
    loop {
        let output = query.clone().set_exclusive_start_key(start.take()).send().await.map_err(unavailable)?;
        count += u64::try_from(output.count()).unwrap_or(0);
        start = output.last_evaluated_key().cloned();
        if start.is_none() {
            return Ok(count);
        }
    }
}

/// A Query on one partition of `index`, sorted by a UUIDv7 attribute, newest first.
#[derive(Debug)]
pub struct NewestFirst<'a> {
    pub table: &'a str,
    pub index: Option<&'a str>,
    pub partition: (&'a str, &'a str),
    pub sort_key: &'a str,
    /// Only items whose sort key is below this (the decoded cursor).
    pub before: Option<String>,
    /// Equality filters on more attributes (attribute, value), all of which must hold.
    pub filters: Vec<(&'a str, &'a str)>,
    /// How many matching items to collect at most.
    pub want: usize,
}

impl NewestFirst<'_> {
    /// Pages through DynamoDB until `want` items matched or the partition is exhausted.
    pub async fn run(&self, client: &Client) -> Result<Vec<Item>> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let left = i32::try_from((self.want - items.len()).min(1000)).unwrap_or(1000);
            let mut query = client
                .query()
                .table_name(self.table)
                .set_index_name(self.index.map(str::to_owned))
                .expression_attribute_names("#pk", self.partition.0)
                .expression_attribute_values(":pk", AttributeValue::S(self.partition.1.to_owned()))
                .scan_index_forward(false)
                .limit(left)
                .set_exclusive_start_key(start.take());
            query = match &self.before {
                Some(before) => query
                    .key_condition_expression("#pk = :pk AND #sk < :before")
                    .expression_attribute_names("#sk", self.sort_key)
                    .expression_attribute_values(":before", AttributeValue::S(before.clone())),
                None => query.key_condition_expression("#pk = :pk"),
            };
            if !self.filters.is_empty() {
                let mut conditions = Vec::with_capacity(self.filters.len());
                for (i, (name, value)) in self.filters.iter().enumerate() {
                    conditions.push(format!("#f{i} = :f{i}"));
                    query = query
                        .expression_attribute_names(format!("#f{i}"), *name)
                        .expression_attribute_values(format!(":f{i}"), AttributeValue::S((*value).to_owned()));
                }
                query = query.filter_expression(conditions.join(" AND "));
            }
            let output = query.send().await.map_err(unavailable)?;
            items.extend(output.items().iter().cloned());
            start = output.last_evaluated_key().cloned();
            if items.len() >= self.want || start.is_none() {
                items.truncate(self.want);
                return Ok(items);
            }
        }
    }
}
