//! Batch plumbing shared by v3 and v4: reading batch-read bodies and paging
//! each input.
use std::time::SystemTime;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use super::error::{invalid_field, GatewayResult};
use super::json::{body, BatchResponse, Inputs, ReadInput};
use super::version::{ApiVersion, BatchKind};
use super::{Gateway, MAX_READ_INPUTS};
use crate::domain::DomainError;
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
/// each result built by `result` from its from-id and page. The status (and
/// every failed input) is known before the first page, so the body is
/// written as the pages are read: the envelope's head, each result as its
/// page comes, then the errors and times. A failure after the head ends the
/// body short (the client sees a truncated answer, never a complete wrong
/// one).
pub async fn read_pages<T: Serialize + Send + 'static>(
    gw: &Gateway,
    version: ApiVersion,
    pair: PortalPair,
    bytes: &Bytes,
    page_size: u32,
    result: impl Fn(i64, AssociationPage) -> T + Send + 'static,
) -> GatewayResult<Response> {
    let started = SystemTime::now();
    let inputs = read_inputs(bytes)?;
    let stream = gw.service.stream_pages(pair, &inputs, page_size).await?;
    let status = version
        .batch_status(BatchKind::Read, !stream.errors.is_empty())
        .unwrap_or(StatusCode::OK);
    let from_ids: Vec<i64> = inputs.iter().map(|i| i.from_id).collect();
    let head = envelope_part(&[], started, Part::Head);
    let head = tokio_stream::iter(std::iter::once(Ok::<_, std::io::Error>(head)));
    let errors = stream.errors;
    let mut first = true;
    let results = ReceiverStream::new(stream.pages).map(move |chunk| {
        let chunk = chunk.map_err(|err| {
            tracing::warn!(error = %err, "a batch read's answer ended short");
            std::io::Error::other(err.to_string())
        })?;
        let mut out = Vec::new();
        for (index, page) in chunk.pages {
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
            serde_json::to_writer(&mut out, &result(from_ids[index], page))
                .map_err(std::io::Error::other)?;
        }
        Ok(Bytes::from(out))
    });
    let tail = tokio_stream::iter(std::iter::once_with(move || {
        Ok(envelope_part(&errors, started, Part::Tail))
    }));
    let mut response = Body::from_stream(head.chain(results).chain(tail)).into_response();
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// Where the results go in a batch envelope written with none.
const NO_RESULTS: &str = "\"results\":[]";

/// A part of HubSpot's batch envelope around streamed results.
enum Part {
    /// Up to the results' opening bracket.
    Head,
    /// From the results' closing bracket on: the errors and the times.
    Tail,
}

/// `part` of the batch envelope with `errors`, completed now: the envelope
/// written with no results, split where they go.
fn envelope_part(errors: &[(usize, DomainError)], started: SystemTime, part: Part) -> Bytes {
    let empty = BatchResponse::<()>::new(started, Vec::new(), errors);
    let whole = serde_json::to_string(&empty).expect("a batch envelope serializes");
    let at = whole
        .find(NO_RESULTS)
        .expect("the envelope holds its results")
        + NO_RESULTS.len()
        - 1;
    Bytes::from(match part {
        Part::Head => whole[..at].to_string(),
        Part::Tail => whole[at..].to_string(),
    })
}
