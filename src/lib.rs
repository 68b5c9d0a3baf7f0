//! association-service: stores the associations between CRM records per
//! portal, enforces per-record association limits transactionally, and serves
//! them over gRPC. Layers: front ends (`grpc`, `gateway`) -> `service` -> `store`;
//! `domain` is pure.
pub mod admission;
pub mod auth;
pub mod config;
pub mod domain;
pub mod files;
pub mod gateway;
pub mod grpc;
pub mod health;
pub mod hooks;
pub mod listen;
pub mod proto;
pub mod reload;
pub mod server;
pub mod service;
pub mod status_table;
pub mod store;
pub mod telemetry;
