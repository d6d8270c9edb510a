//! The index API's route table, written once. The shard answers it from its
//! own indexes and the router by forwarding to owners; one field per route
//! means neither can leave a route out or serve it under another path.

use axum::Router;
use axum::routing::MethodRouter;

/// One handler per route of the public API (`/v1/...`), with its method.
pub(crate) struct IndexApi<S> {
    /// `GET /v1/indexes`
    pub list: MethodRouter<S>,
    /// `GET /v1/indexes/{id}`
    pub status: MethodRouter<S>,
    /// `POST /v1/indexes/{id}/search`
    pub search: MethodRouter<S>,
    /// `GET /v1/indexes/{id}/symbols/{name}`
    pub symbols: MethodRouter<S>,
    /// `GET /v1/indexes/{id}/files/{*path}`
    pub read_file: MethodRouter<S>,
    /// `GET /v1/indexes/{id}/outline/{*path}`
    pub outline: MethodRouter<S>,
    /// `POST /v1/search`
    pub search_many: MethodRouter<S>,
    /// `POST /v1/admin/indexes/{id}`
    pub register: MethodRouter<S>,
    /// `DELETE /v1/admin/indexes/{id}`
    pub unregister: MethodRouter<S>,
    /// `POST /v1/admin/indexes/{id}/reset`
    pub reset: MethodRouter<S>,
    /// `POST /v1/admin/indexes/{id}/reload`
    pub reload: MethodRouter<S>,
    /// `POST /v1/admin/indexes/{id}/evict`
    pub evict: MethodRouter<S>,
}

impl<S: Clone + Send + Sync + 'static> IndexApi<S> {
    pub(crate) fn into_router(self) -> Router<S> {
        Router::new()
            .route("/v1/indexes", self.list)
            .route("/v1/indexes/{id}", self.status)
            .route("/v1/indexes/{id}/search", self.search)
            .route("/v1/indexes/{id}/symbols/{name}", self.symbols)
            .route("/v1/indexes/{id}/files/{*path}", self.read_file)
            .route("/v1/indexes/{id}/outline/{*path}", self.outline)
            .route("/v1/search", self.search_many)
            .route("/v1/admin/indexes/{id}", self.register.merge(self.unregister))
            .route("/v1/admin/indexes/{id}/reset", self.reset)
            .route("/v1/admin/indexes/{id}/reload", self.reload)
            .route("/v1/admin/indexes/{id}/evict", self.evict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode};
    use axum::routing::{delete, get, post};
    use std::collections::BTreeSet;
    use tower::ServiceExt;

    /// A table whose every handler answers with its own field name.
    fn named() -> Router {
        IndexApi {
            list: get(|| async { "list" }),
            status: get(|| async { "status" }),
            search: post(|| async { "search" }),
            symbols: get(|| async { "symbols" }),
            read_file: get(|| async { "read_file" }),
            outline: get(|| async { "outline" }),
            search_many: post(|| async { "search_many" }),
            register: post(|| async { "register" }),
            unregister: delete(|| async { "unregister" }),
            reset: post(|| async { "reset" }),
            reload: post(|| async { "reload" }),
            evict: post(|| async { "evict" }),
        }
        .into_router()
    }

    /// Every path and method the OpenAPI document describes is served, each
    /// by a different route, and no route is left undocumented.
    #[tokio::test]
    async fn the_table_serves_exactly_what_the_openapi_document_describes() {
        let doc = crate::api::openapi::document();
        let mut reached = BTreeSet::new();
        let mut operations = 0;
        for (path, methods) in doc["paths"].as_object().unwrap() {
            let uri = path
                .replace("{id}", "repo")
                .replace("{name}", "main")
                .replace("{path}", "src/lib.rs");
            for method in methods.as_object().unwrap().keys() {
                operations += 1;
                let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                let request = Request::builder()
                    .method(&method)
                    .uri(&uri)
                    .body(Body::empty())
                    .unwrap();
                let response = named().oneshot(request).await.unwrap();
                assert_eq!(response.status(), StatusCode::OK, "{method} {uri}");
                let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
                reached.insert(String::from_utf8(body.to_vec()).unwrap());
            }
        }
        assert_eq!(
            reached.len(),
            operations,
            "two documented operations reach one handler: {reached:?}"
        );
        assert_eq!(reached.len(), 12, "a route the document leaves out: {reached:?}");
    }

    #[tokio::test]
    async fn a_wrong_method_is_refused_not_served() {
        let request = Request::builder()
            .method(Method::GET)
            .uri("/v1/indexes/repo/search")
            .body(Body::empty())
            .unwrap();
        let response = named().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    }
}
