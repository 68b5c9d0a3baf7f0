//! Batch plumbing shared by v3 and v4: reading batch-read bodies and paging
//! each input.
use std::time::SystemTime;

use axum::body::Bytes;
use axum::response::Response;
use serde::Serialize;

use super::error::{invalid_field, GatewayResult};
use super::json::{body, BatchResponse, Inputs, ReadInput};
use super::version::{ApiVersion, BatchKind};
use super::{Gateway, MAX_READ_INPUTS};
use crate::service::{AssociationPage, PageInput, PortalPair};

/// Reads a batch-read body: at most `MAX_READ_INPUTS` valid ids.
fn read_inputs(bytes: &Bytes) -> GatewayResult<Vec<PageInput>> {
    let inputs: Inputs<ReadInput> = body(bytes)?;
    if inputs.inputs.len() > MAX_READ_INPUTS {
        return Err(invalid_field(
            "inputs",
            format!(
                "A batch read may hold at most {MAX_READ_INPUTS} inputs, this one has {}",
                inputs.inputs.len()
            ),
        ));
    }
    inputs
        .inputs
        .into_iter()
        .map(|i| {
            Ok(PageInput {
                from_id: i.id.id("id")?,
                after: i.after,
            })
        })
        .collect()
}

/// Answers a batch read (v3 or v4): one page of `page_size` per input,
/// each result built by `result` from its from-id and page.
pub async fn read_pages<T: Serialize>(
    gw: &Gateway,
    version: ApiVersion,
    pair: PortalPair,
    bytes: &Bytes,
    page_size: u32,
    result: impl Fn(i64, AssociationPage) -> T,
) -> GatewayResult<Response> {
    let started = SystemTime::now();
    let inputs = read_inputs(bytes)?;
    let outcome = gw.service.page_many(pair, &inputs, page_size).await?;
    let results = outcome
        .results
        .into_iter()
        .map(|(index, page)| result(inputs[index].from_id, page))
        .collect();
    Ok(version.batch(
        BatchKind::Read,
        BatchResponse::new(started, results, &outcome.errors),
    ))
}
