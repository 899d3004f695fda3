//! The OpenAPI 3.1 document of the routes, served at `GET /openapi.json`.
//!
//! Written out by hand rather than derived: the routes are few, and a test
//! (`tests/the_openapi_document_describes_every_route.rs`) calls every operation it lists
//! and checks the routes answer as documented, so the document cannot drift from them.

use serde_json::{json, Value};

/// The OpenAPI document of the routes [`routes`](crate::routes) mounts.
pub fn openapi() -> Value {
    let run_id = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}});
    let error = |description: &str| json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    let run = |description: &str| json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Run"}}}});
    let retry_after = json!({"Retry-After": {"description": "Seconds to wait before trying again (here or on another process of the service).", "schema": {"type": "integer", "minimum": 1}}});
    let unavailable = |description: &str| json!({"description": description, "headers": retry_after.clone(), "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    let stopping =
        || unavailable("The engine is stopping or its store is unreachable; Retry-After says when to try again.");
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "graphloop",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Start, watch, cancel and inspect graphloop workflow runs. Every route but /health and /metrics needs a bearer token; a caller sees only their own runs (another user's run answers 404)."
        },
        "security": [{"bearer": []}],
        "paths": {
            "/runs": {
                "post": {
                    "summary": "Start a run",
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/StartRun"}}}},
                    "responses": {
                        "200": run("The run an earlier request with the same idempotency key started."),
                        "201": run("The run, queued or running; Location points at it."),
                        "400": error("Malformed JSON, unknown fields, or an idempotency key the store cannot take (empty, over 255 bytes, a NUL character)."),
                        "401": error("No or unknown bearer token."),
                        "404": error("No graph of that name."),
                        "413": error("The body is over the limit."),
                        "415": error("The body is not JSON."),
                        "422": error("The graph's state type refuses the input."),
                        "409": error("The idempotency key was used for another graph or input."),
                        "503": unavailable("The admission queue is full, the engine is stopping, or its store is unreachable; Retry-After says when to try again.")
                    }
                },
                "get": {
                    "summary": "The caller's runs, newest first, a page at a time",
                    "parameters": [
                        {"name": "status", "in": "query", "schema": {"$ref": "#/components/schemas/Status"}},
                        {"name": "graph", "in": "query", "schema": {"type": "string"}},
                        {"name": "before", "in": "query", "description": "The `next` cursor of the previous page.", "schema": {"type": "string", "format": "uuid"}},
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}}
                    ],
                    "responses": {
                        "200": {"description": "A page of runs.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RunPage"}}}},
                        "400": error("A bad status, cursor or limit, or a graph name the store cannot take (a NUL character, over 255 bytes)."),
                        "401": error("No or unknown bearer token."),
                        "503": stopping()
                    }
                }
            },
            "/runs/{id}": {
                "get": {
                    "summary": "One run",
                    "parameters": [run_id.clone()],
                    "responses": {"200": run("The run."), "400": error("Not a run id."), "401": error("No or unknown bearer token."), "404": error("No such run of the caller."), "503": stopping()}
                }
            },
            "/runs/{id}/events": {
                "get": {
                    "summary": "The run's events as Server-Sent Events",
                    "description": "Stored events from Last-Event-ID + 1 (or ?from=N), each framed `id: <seq>`, `event: <kind>`, `data: <event record>`, then live ones until the run ends. In-node progress comes as `event: progress` without an id, so a reconnect with Last-Event-ID never skips a stored event.",
                    "parameters": [
                        run_id.clone(),
                        {"name": "Last-Event-ID", "in": "header", "schema": {"type": "integer", "minimum": 0}},
                        {"name": "from", "in": "query", "schema": {"type": "integer", "minimum": 1}}
                    ],
                    "responses": {
                        "200": {"description": "The event stream.", "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                        "400": error("A bad Last-Event-ID or from."),
                        "401": error("No or unknown bearer token."),
                        "404": error("No such run of the caller."),
                        "503": stopping()
                    }
                }
            },
            "/runs/{id}/cancel": {
                "post": {
                    "summary": "Cancel a run",
                    "parameters": [run_id.clone()],
                    "responses": {"202": run("Cancellation accepted."), "400": error("Not a run id."), "401": error("No or unknown bearer token."), "404": error("No such run of the caller."), "409": error("The run has already ended."), "503": stopping()}
                }
            },
            "/runs/{id}/resume": {
                "post": {
                    "summary": "Answer a waiting run's question",
                    "parameters": [run_id],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Resume"}}}},
                    "responses": {"202": run("The run goes on with the answer."), "400": error("Malformed JSON, or not a run id."), "401": error("No or unknown bearer token."), "404": error("No such run of the caller."), "409": error("The run is not waiting."), "503": stopping()}
                }
            },
            "/health": {
                "get": {
                    "summary": "How the engine is doing: status, reasons, recommendations, measured figures",
                    "security": [],
                    "responses": {
                        "200": {"description": "Healthy or degraded (some runs held up; the reasons name them).", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}},
                        "503": {"description": "Unhealthy: the engine cannot make progress (the store is down, an engine thread is blocked).", "headers": retry_after.clone(), "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}}
                    }
                }
            },
            "/metrics": {
                "get": {
                    "summary": "The engine's metrics as Prometheus text (runs, step durations, store writes, queue, loop lag)",
                    "security": [],
                    "responses": {
                        "200": {"description": "Prometheus text exposition format 0.0.4.", "content": {"text/plain": {"schema": {"type": "string"}}}},
                        "401": error("No or unknown bearer token (only when the service requires an identity for /health and /metrics)."),
                        "404": error("Metrics are not enabled: the service was not given a Prometheus handle.")
                    }
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": {"description": "The OpenAPI document.", "content": {"application/json": {"schema": {"type": "object"}}}}, "401": error("No or unknown bearer token.")}
                }
            }
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Status": {"type": "string", "enum": ["queued", "running", "waiting", "interrupted", "completed", "failed", "cancelled"]},
                "StartRun": {
                    "type": "object",
                    "required": ["graph", "input"],
                    "additionalProperties": false,
                    "properties": {"graph": {"type": "string"}, "input": {"description": "The graph's state type as JSON."}, "idempotency_key": {"type": "string", "minLength": 1, "maxLength": 255, "description": "A retried request with the same key returns the run the first one started (200), for as long as the run is stored."}}
                },
                "Resume": {"type": "object", "required": ["answer"], "additionalProperties": false, "properties": {"answer": {}}},
                "Run": {
                    "type": "object",
                    "required": ["id", "graph", "graph_version", "status", "percent", "step", "tasks", "waiting_for_commit", "created_at", "updated_at"],
                    "properties": {
                        "id": {"type": "string", "format": "uuid"},
                        "graph": {"type": "string"},
                        "graph_version": {"type": "integer"},
                        "status": {"$ref": "#/components/schemas/Status"},
                        "percent": {"type": "number", "minimum": 0, "maximum": 100},
                        "step": {"type": "integer"},
                        "tasks": {"type": "array", "items": {"type": "string"}},
                        "waiting_for_commit": {"type": "boolean"},
                        "created_at": {"type": "string", "format": "date-time"},
                        "updated_at": {"type": "string", "format": "date-time"},
                        "started_at": {"type": ["string", "null"], "format": "date-time"},
                        "finished_at": {"type": ["string", "null"], "format": "date-time"},
                        "error": {"description": "Why it failed, once failed."},
                        "output": {"description": "The final state, once completed."}
                    }
                },
                "RunPage": {
                    "type": "object",
                    "required": ["runs"],
                    "properties": {"runs": {"type": "array", "items": {"$ref": "#/components/schemas/Run"}}, "next": {"type": ["string", "null"], "format": "uuid"}}
                },
                "Health": {
                    "type": "object",
                    "required": ["status", "reasons", "recommendations"],
                    "properties": {
                        "status": {"type": "string", "enum": ["healthy", "degraded", "unhealthy"]},
                        "reasons": {"type": "array", "items": {"type": "string"}},
                        "recommendations": {"type": "array", "items": {"type": "string"}}
                    }
                },
                "Error": {
                    "type": "object",
                    "required": ["error", "reason"],
                    "properties": {"error": {"type": "string", "description": "The kind: unauthorized, bad_request, run_not_found, ..."}, "reason": {"type": "string"}}
                }
            }
        }
    })
}
