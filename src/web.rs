//! The control page, compiled into the binary so the robot needs no files beside it and
//! the browser needs no network beyond the robot. Sources are in `web/`.

pub const INDEX_HTML: &str = include_str!("../web/index.html");
pub const APP_JS: &str = include_str!("../web/app.js");
pub const STYLE_CSS: &str = include_str!("../web/style.css");
