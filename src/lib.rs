//! association-service: stores the associations between CRM records per
//! portal, enforces per-record association limits transactionally, and serves
//! them over gRPC. Layers: front ends (`grpc`) -> `service` -> `store`;
//! `domain` is pure.
pub mod config;
pub mod domain;
pub mod grpc;
pub mod server;
pub mod service;
pub mod store;
pub mod transfer;
