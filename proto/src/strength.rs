//! How strong a password a person chooses must be: the host's fixed password (`peer password
//! set`) and the rendezvous console's accounts follow the same rule.

/// Shortest password.
pub const MIN_LEN: usize = 12;
/// Least estimated strength, in bits.
pub const MIN_BITS: f64 = 55.0;

/// Refuses a password shorter than [`MIN_LEN`] or weaker than [`MIN_BITS`] by a simple
/// estimate (length × log2 of the character classes it uses, counted on distinct characters so
/// `aaaaaaaaaaaa` does not pass); the error says what to do.
pub fn check(pw: &str) -> Result<(), String> {
    let len = pw.chars().count();
    if len < MIN_LEN {
        return Err(format!("use at least {MIN_LEN} characters (got {len})"));
    }
    let mut pool = 0u32;
    if pw.chars().any(|c| c.is_ascii_lowercase()) {
        pool += 26;
    }
    if pw.chars().any(|c| c.is_ascii_uppercase()) {
        pool += 26;
    }
    if pw.chars().any(|c| c.is_ascii_digit()) {
        pool += 10;
    }
    if pw.chars().any(|c| !c.is_ascii_alphanumeric()) {
        pool += 33;
    }
    let mut distinct: Vec<char> = pw.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    // Repeats add little: count each distinct character fully and repeats at a quarter.
    let effective = distinct.len() as f64 + (len - distinct.len()) as f64 / 4.0;
    let bits = effective * f64::from(pool.max(1)).log2();
    if bits < MIN_BITS {
        return Err(format!(
            "about {bits:.0} bits; use {MIN_BITS:.0} or more (longer, or mix letters, digits \
             and symbols)"
        ));
    }
    Ok(())
}
