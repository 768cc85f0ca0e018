//! Text that came from the other side (a denial reason, a goodbye, a name): made safe to print.
//!
//! A hostile peer could send terminal escape sequences (to rewrite what the user sees, set the
//! window title, or worse on old terminals) or bidirectional-override characters (to make text
//! read differently from what it is). Everything remote goes through [`printable`] before it
//! reaches a terminal, a log line or a window title.

/// Longest remote text kept, in characters.
pub const MAX_CHARS: usize = 200;

/// `s` without control characters (C0, DEL, C1), bidirectional overrides and isolates, cut to
/// [`MAX_CHARS`] characters (an ellipsis marks a cut).
pub fn printable(s: &str) -> String {
    let mut kept = s
        .chars()
        .filter(|c| !c.is_control() && !is_bidi_control(*c));
    let mut out: String = kept.by_ref().take(MAX_CHARS).collect();
    // The same filter decides what was cut: an ellipsis only where printable text was.
    if kept.next().is_some() {
        out.push('…');
    }
    out
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_overrides_are_removed() {
        let hostile =
            "wrong password\x1b]0;pwned\x07\x1b[2J\r\nfake prompt$ \u{9b}31m\u{202E}txt.exe";
        let shown = printable(hostile);
        assert!(!shown.chars().any(|c| c.is_control()), "{shown:?}");
        assert!(!shown.contains('\u{202E}'));
        assert!(shown.starts_with("wrong password"));
        assert_eq!(printable("héllo wörld"), "héllo wörld");
        let long = "x".repeat(1000);
        assert_eq!(printable(&long).chars().count(), MAX_CHARS + 1);
        // Exactly the limit after removing controls and overrides: nothing cut, no ellipsis
        // (found by the session_control fuzz target).
        let exact = format!("{}\u{202e}\x1b", "a".repeat(MAX_CHARS));
        assert_eq!(printable(&exact), "a".repeat(MAX_CHARS));
    }
}
