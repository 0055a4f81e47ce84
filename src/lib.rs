//! roverd: live video and sound from a Raspberry Pi robot to browsers on the LAN over
//! WebRTC, and driving it from the same page.
//!
//! The map of the modules is in ARCHITECTURE.md. In short: `config` and `protocol` are
//! pure, and so is `safety`, the motor rules; `control` applies them to `motors`; `media`
//! captures and encodes once per medium on its own threads; `rtc` is the only module that
//! calls webrtc-rs; `peers` owns peer lifetimes; `http` owns the routes and what a request
//! may do; `server::serve` builds the rest and ties it together from start to shutdown;
//! `daemon::run` is the process around it (runtime, signals, the time allowed to stop).

// Nothing in roverd needs `unsafe`; the crates it builds on hold what does.
#![forbid(unsafe_code)]

mod cli;
pub mod config;
mod connlimit;
mod control;
mod daemon;
#[doc(hidden)]
pub mod fuzzing;
mod http;
mod logging;
mod media;
mod motors;
mod notify;
mod peers;
mod protocol;
mod ratelimit;
mod rtc;
mod safety;
mod server;
mod session;
mod sync;
#[doc(hidden)]
pub mod testing;
mod tls;
mod web;

pub use cli::{check_config, devices, motors_off};
pub use daemon::{run, RunError, RunOptions};
pub use server::{serve, serve_on, serve_with_state, Listeners, ServeError};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
