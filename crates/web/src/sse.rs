//! `GET /runs/{id}/events`: a run's events as Server-Sent Events.
//!
//! Stored events carry `id: <seq>`, so a client that reconnects (browsers do it by
//! themselves, sending `Last-Event-ID`) goes on from the next one and never skips or
//! repeats a stored event. Progress ticks are not stored and carry no `id`: were they
//! to set the client's last event id, a reconnect could skip stored events.

use std::convert::Infallible;

use actix_web::http::header;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use futures_util::stream::{self, Stream};
use graphloop_core::RunEvent;
use graphloop_runtime::{Engine, EventRecord, EventStream, RunStatus, Streamed};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::WebError;
use crate::handlers::{owned_run, parse_run_id, Shared};
use crate::identity::Caller;

/// The query of `GET /runs/{id}/events`.
#[derive(Deserialize)]
pub(crate) struct EventsRequest {
    from: Option<String>,
}

/// The handler: replays stored events from `Last-Event-ID` + 1 (or `?from=N`, or the
/// first), then follows the run live until it ends.
pub(crate) async fn events(
    caller: Caller,
    shared: web::Data<Shared>,
    req: HttpRequest,
    id: web::Path<String>,
    request: web::Query<EventsRequest>,
) -> Result<HttpResponse, WebError> {
    let id = parse_run_id("id", &id)?;
    let from_seq = first_seq(&req, request.into_inner())?;
    owned_run(&shared, &caller, id).await?;
    let events = shared.engine.subscribe(id, from_seq).await?;
    let frames = frames(Follow { engine: shared.engine.clone(), run_id: id, next_seq: from_seq, events, fresh: true });
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .streaming(frames))
}

/// The first seq to send: after `Last-Event-ID` (a reconnecting client; it wins over the
/// query, which a browser repeats unchanged on every reconnect), else `?from=`, else 1.
fn first_seq(req: &HttpRequest, request: EventsRequest) -> Result<u64, WebError> {
    if let Some(last) = req.headers().get("last-event-id") {
        let bad = || WebError::BadRequest("`Last-Event-ID` must be the seq of an event (a whole number)".into());
        let last: u64 = last.to_str().map_err(|_| bad())?.trim().parse().map_err(|_| bad())?;
        return last.checked_add(1).ok_or_else(bad);
    }
    match request.from {
        None => Ok(1),
        Some(from) => from.parse().map_err(|_| {
            WebError::BadRequest(format!("`from` must be the seq of an event (a whole number), not `{from}`"))
        }),
    }
}

/// Where a response's stream stands.
struct Follow {
    engine: Engine,
    run_id: Uuid,
    /// The seq of the next stored event to send.
    next_seq: u64,
    events: EventStream,
    /// Whether the current subscription has delivered nothing yet.
    fresh: bool,
}

/// The frames of the response, ending after the run's final event.
fn frames(follow: Follow) -> impl Stream<Item = Result<Bytes, Infallible>> {
    stream::unfold(Some(follow), |follow| async move {
        let mut follow = follow?;
        loop {
            match follow.events.next().await {
                Some(Streamed::Event(record)) => {
                    follow.next_seq = record.seq + 1;
                    follow.fresh = false;
                    let terminal = record.event.kind.is_terminal();
                    return match event_frame(&record) {
                        Ok(frame) => Some((Ok(frame), (!terminal).then_some(follow))),
                        Err(frame) => Some((Ok(frame), None)),
                    };
                }
                Some(Streamed::Progress { run_id, event }) => {
                    follow.fresh = false;
                    match progress_frame(run_id, &event) {
                        Some(frame) => return Some((Ok(frame), Some(follow))),
                        None => continue,
                    }
                }
                None => {
                    // The engine ended the subscription without the final event: the
                    // subscriber fell behind (subscribe again from where it stopped), or
                    // the run will not go on in this process. A subscription that ended
                    // at once is not retried here, so this never spins; the client's
                    // reconnect (with Last-Event-ID) is the retry.
                    if follow.fresh {
                        return None;
                    }
                    let status = follow.engine.status(follow.run_id).await.ok()?.run.status;
                    if status.is_terminal() || status == RunStatus::Interrupted {
                        return None;
                    }
                    follow.events = follow.engine.subscribe(follow.run_id, follow.next_seq).await.ok()?;
                    follow.fresh = true;
                }
            }
        }
    })
}

/// A stored event's frame; if it cannot be serialized, an `error` frame that ends the
/// stream (its `id` is not sent, so a reconnect asks for the same event again).
fn event_frame(record: &EventRecord) -> Result<Bytes, Bytes> {
    match serde_json::to_string(record) {
        Ok(data) => {
            Ok(Bytes::from(format!("id: {}\nevent: {}\ndata: {data}\n\n", record.seq, record.event.kind.name())))
        }
        Err(error) => {
            tracing::error!(%error, run_id = %record.run_id, seq = record.seq, "cannot serialize a stored event");
            let data = serde_json::json!({"error": "internal", "reason": format!("event {} of run {}: {error}", record.seq, record.run_id)});
            Err(Bytes::from(format!("event: error\ndata: {data}\n\n")))
        }
    }
}

/// A progress tick's frame, without `id`; `None` (skipped: ticks may be dropped anyway)
/// if it cannot be serialized.
fn progress_frame(run_id: Uuid, event: &RunEvent) -> Option<Bytes> {
    #[derive(Serialize)]
    struct Progress<'a> {
        run_id: Uuid,
        #[serde(flatten)]
        event: &'a RunEvent,
    }
    match serde_json::to_string(&Progress { run_id, event }) {
        Ok(data) => Some(Bytes::from(format!("event: progress\ndata: {data}\n\n"))),
        Err(error) => {
            tracing::warn!(%error, %run_id, "cannot serialize a progress tick; skipped");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn first(last_event_id: Option<&str>, from: Option<&str>) -> Result<u64, WebError> {
        let mut req = TestRequest::default();
        if let Some(last) = last_event_id {
            req = req.insert_header(("Last-Event-ID", last));
        }
        first_seq(&req.to_http_request(), EventsRequest { from: from.map(Into::into) })
    }

    #[test]
    fn the_stream_starts_after_last_event_id_else_at_from_else_at_one() {
        assert_eq!(first(None, None).ok(), Some(1));
        assert_eq!(first(None, Some("7")).ok(), Some(7));
        assert_eq!(first(Some("4"), None).ok(), Some(5));
        assert_eq!(first(Some("4"), Some("7")).ok(), Some(5), "a reconnect's header wins over the query");
    }

    #[test]
    fn a_bad_last_event_id_or_from_is_a_bad_request() {
        for (last, from) in
            [(Some("x"), None), (Some("-1"), None), (Some("18446744073709551615"), None), (None, Some("y"))]
        {
            assert!(matches!(first(last, from), Err(WebError::BadRequest(_))), "{last:?} {from:?}");
        }
    }
}
