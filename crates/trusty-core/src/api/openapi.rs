//! The OpenAPI 3.1 document of the API, generated from the same Rust types
//! the handlers use (via schemars), so it cannot drift from the bodies served.

use super::error::ErrorBody;
use super::types::*;
use serde_json::{Value, json};

fn schema<T: schemars::JsonSchema>() -> Value {
    serde_json::to_value(schemars::schema_for!(T)).unwrap_or(Value::Null)
}

fn json_body(schema: Value) -> Value {
    json!({ "content": { "application/json": { "schema": schema } } })
}

fn op(summary: &str, params: Value, request: Option<Value>, response: Value, admin: bool) -> Value {
    let mut o = json!({
        "summary": summary,
        "parameters": params,
        "responses": {
            "200": json_body(response),
            "default": { "description": "error", "content": { "application/json": { "schema": schema::<ErrorBody>() } } }
        }
    });
    o["responses"]["200"]["description"] = json!("ok");
    if let Some(r) = request {
        o["requestBody"] = json_body(r);
    }
    if admin {
        o["security"] = json!([{ "bearer": [] }]);
    }
    o
}

fn path_param(name: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } })
}

pub fn document() -> Value {
    let id = || json!([path_param("id")]);
    let status = schema::<IndexStatus>();
    json!({
        "openapi": "3.1.0",
        "info": { "title": "trusty-search", "version": env!("CARGO_PKG_VERSION") },
        "components": { "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } } },
        "paths": {
            "/v1/indexes/{id}/search": { "post": op("Search one index", id(), Some(schema::<SearchRequest>()), schema::<SearchResponse>(), false) },
            "/v1/search": { "post": op("Search many or all indexes", json!([]), Some(schema::<MultiSearchRequest>()), schema::<MultiSearchResponse>(), false) },
            "/v1/indexes/{id}/symbols/{name}": { "get": op(
                "Graph navigation",
                json!([path_param("id"), path_param("name"),
                    { "name": "rel", "in": "query", "schema": { "enum": ["definition", "references", "callers", "callees"] } },
                    { "name": "depth", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 5 } },
                    { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 500 } }]),
                None, schema::<SymbolResponse>(), false) },
            "/v1/indexes/{id}/files/{path}": { "get": op(
                "Lines of a file as the version indexed it (path relative to the repository root, slashes kept)",
                json!([path_param("id"), path_param("path"),
                    { "name": "lines", "in": "query", "schema": { "type": "string", "pattern": "^[1-9][0-9]*(-([1-9][0-9]*)?)?$" },
                      "description": format!("`a-b`, `a-` or `a`; at most {MAX_READ_LINES} lines per read") }]),
                None, schema::<FileContent>(), false) },
            "/v1/indexes/{id}/outline/{path}": { "get": op(
                "The symbols a file defines, in line order",
                json!([path_param("id"), path_param("path")]),
                None, schema::<FileOutline>(), false) },
            "/v1/indexes": { "get": op("List indexes with their state per owner", json!([]), None, schema::<IndexList>(), false) },
            "/v1/indexes/{id}": { "get": op("Index status per owner", id(), None, status.clone(), false) },
            "/v1/admin/indexes/{id}": {
                "post": op("Register (and preload) an index", id(), None, status.clone(), true),
                "delete": op("Unregister an index", id(), None, json!({}), true)
            },
            "/v1/admin/indexes/{id}/reset": { "post": op("Clear a failed restore", id(), None, status.clone(), true) },
            "/v1/admin/indexes/{id}/reload": { "post": op("Load the current version now", id(), None, status, true) },
            "/v1/admin/indexes/{id}/evict": { "post": op("Evict from memory", id(), None, json!({}), true) }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_describes_every_route_with_real_schemas() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        assert_eq!(paths.len(), 11);
        let read = &doc["paths"]["/v1/indexes/{id}/files/{path}"]["get"];
        let text = &read["responses"]["200"]["content"]["application/json"]["schema"]["properties"]["text"];
        assert!(text.is_object(), "{read}");
        let search = &doc["paths"]["/v1/indexes/{id}/search"]["post"];
        let req = &search["requestBody"]["content"]["application/json"]["schema"];
        assert!(req["properties"]["query"].is_object(), "{req}");
        assert!(req["properties"]["top_k"].is_object());
        let resp = &search["responses"]["200"]["content"]["application/json"]["schema"];
        assert!(resp["properties"]["hits"].is_object(), "{resp}");
        let err = &search["responses"]["default"]["content"]["application/json"]["schema"];
        assert!(err["properties"]["retryable"].is_object());
        assert_eq!(
            doc["paths"]["/v1/admin/indexes/{id}/reset"]["post"]["security"][0]["bearer"],
            json!([])
        );
    }
}
