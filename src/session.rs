//! One data channel's session with a peer: what the peer may do, and (soon) the whole
//! per-channel policy as pure code.

/// What a peer's token lets it do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Watch and drive: the `http.token`, or anyone when no token is configured.
    Full,
    /// Watch only: the `http.viewer_token`. `stop` and `estop` are still obeyed, as from
    /// any peer, because stopping the robot must never need a permission.
    Viewer,
}
