//! The 12-digit Vietnamese personal identification number (số định danh cá nhân, printed on
//! the CCCD card): parsing, normalisation and structural checks.
//!
//! Layout: `PPP G YY RRRRRR` — province (or country, for births registered abroad) code, a
//! century/gender digit, the last two digits of the birth year and six random digits. There is
//! no check digit.
//!
//! The only hard rule is "12 ASCII digits after normalisation". Everything else (unknown
//! prefix, implausible birth year, disagreement with a birthdate or gender claim) is reported
//! as a [`NationalIdWarning`] to flag for review: real numbers with a "wrong" structure exist.
//!
//! This module does **not** decide whether two records belong to the same person, nor route
//! anything by prefix (the prefix is where the birth was registered, not where someone lives).
//! Linking is decided elsewhere.

use std::fmt;
use std::str::FromStr;

/// A personal identification number: exactly 12 ASCII digits after normalisation. The only
/// hard rule.
///
/// Serialises as the plain 12-digit string; deserialisation goes through [`NationalId::parse`].
/// `Debug` prints only the masked form (the number is personal data); `Display` prints the full
/// number.
#[derive(Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct NationalId(String);

/// Number of digits in a personal identification number.
const NATIONAL_ID_LEN: usize = 12;
/// Number of digits in an old ID card (CMND) number.
const CMND_LEN: usize = 9;
/// Birth years further back than this (relative to today) are flagged as implausible.
const MAX_PLAUSIBLE_AGE_YEARS: i32 = 130;

/// The 63 pre-2025 province codes ("0" + two-digit statistics code). They did not change with
/// the 2025 merger. Sorted, for binary search.
const PROVINCE_PREFIXES: [&str; 63] = [
    "001", "002", "004", "006", "008", "010", "011", "012", "014", "015", "017", "019", "020", "022", "024",
    "025", "026", "027", "030", "031", "033", "034", "035", "036", "037", "038", "040", "042", "044", "045",
    "046", "048", "049", "051", "052", "054", "056", "058", "060", "062", "064", "066", "067", "068", "070",
    "072", "074", "075", "077", "079", "080", "082", "083", "084", "086", "087", "089", "091", "092", "093",
    "094", "095", "096",
];

/// Prefixes used for births registered abroad (country codes).
const ABROAD_PREFIXES: std::ops::RangeInclusive<u16> = 101..=295;

impl NationalId {
    /// Normalises (strips ASCII/Unicode whitespace incl. NBSP and zero-width spaces, dots,
    /// dashes/hyphens incl. U+2010..U+2015 and U+2212, underscores and their full-width forms;
    /// maps full-width digits U+FF10..U+FF19 and other Unicode decimal digits to ASCII) then
    /// requires exactly 12 ASCII digits.
    pub fn parse(input: &str) -> Result<NationalId, NationalIdError> {
        let digits = normalize_digits(input)?;
        match digits.len() {
            0 => Err(NationalIdError::Empty),
            NATIONAL_ID_LEN => Ok(NationalId(digits)),
            CMND_LEN => Err(NationalIdError::LooksLikeCmnd),
            n => Err(NationalIdError::WrongLength { digits: n }),
        }
    }

    /// The normalised 12-digit number.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// First three digits: province code of birth registration, or 101–295 for a country code
    /// (birth registered abroad). Never route or decide anything by it.
    pub fn province_code(&self) -> &str {
        self.0.get(..3).unwrap_or_default()
    }

    /// Fourth digit: century (digit / 2) and gender (odd = female).
    pub fn century_gender_digit(&self) -> u8 {
        self.digit(3)
    }

    /// Birth year encoded in the number: `(19 + d/2) * 100 + YY`.
    pub fn birth_year(&self) -> u16 {
        let century = 19 + u16::from(self.century_gender_digit() / 2);
        let yy = u16::from(self.digit(4)) * 10 + u16::from(self.digit(5));
        century * 100 + yy
    }

    /// Gender encoded in the number: odd century/gender digit = female.
    pub fn gender(&self) -> Gender {
        if self.century_gender_digit() % 2 == 1 { Gender::Female } else { Gender::Male }
    }

    /// Structural warnings (never errors): unknown prefix (not one of the 63 province codes
    /// and not 101–295 abroad), implausible birth year (after `today`'s year, or more than 130
    /// years before), birth year disagreeing with a given birthdate, gender disagreeing with a
    /// given gender.
    pub fn warnings(
        &self,
        birthdate: Option<time::Date>,
        gender: Option<Gender>,
        today: time::Date,
    ) -> Vec<NationalIdWarning> {
        let mut warnings = Vec::new();

        let prefix = self.province_code();
        if !is_known_prefix(prefix) {
            warnings.push(NationalIdWarning::UnknownProvincePrefix { prefix: prefix.to_owned() });
        }

        let year = self.birth_year();
        let this_year = today.year();
        let year_i32 = i32::from(year);
        if year_i32 > this_year || year_i32 < this_year - MAX_PLAUSIBLE_AGE_YEARS {
            warnings.push(NationalIdWarning::ImplausibleBirthYear { year });
        }

        if let Some(birthdate) = birthdate
            && birthdate.year() != year_i32
        {
            warnings.push(NationalIdWarning::BirthYearMismatch {
                from_number: year,
                from_birthdate: birthdate.year(),
            });
        }

        let from_number = self.gender();
        if let Some(claimed) = gender
            && claimed != from_number
        {
            warnings.push(NationalIdWarning::GenderMismatch { from_number, claimed });
        }

        warnings
    }

    /// Masked for logs: "079******123" (first 3, last 3).
    pub fn masked(&self) -> String {
        let head = self.0.get(..3).unwrap_or_default();
        let tail = self.0.get(NATIONAL_ID_LEN - 3..).unwrap_or_default();
        format!("{head}******{tail}")
    }

    /// Value of the ASCII digit at `index` (0 if out of range, which the invariant excludes).
    fn digit(&self, index: usize) -> u8 {
        self.0.as_bytes().get(index).map_or(0, |b| b.wrapping_sub(b'0'))
    }
}

/// Masks a stored or asserted number for lists: [`NationalId::masked`] for a valid number,
/// otherwise every character but the last three starred.
pub fn mask_any(raw: &str) -> String {
    match NationalId::parse(raw) {
        Ok(n) => n.masked(),
        Err(_) => {
            let chars: Vec<char> = raw.chars().collect();
            let keep = chars.len().saturating_sub(3);
            chars.iter().enumerate().map(|(i, c)| if i < keep { '*' } else { *c }).collect()
        }
    }
}

/// `text` with every run of exactly twelve digits (a personal identification number, wherever
/// an operator typed or a detail recorded one) masked as [`mask_any`] masks it; longer or
/// shorter runs (times, ids) are left alone.
pub fn mask_in_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() == NATIONAL_ID_LEN {
            out.push_str(&mask_any(run));
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

fn is_known_prefix(prefix: &str) -> bool {
    if PROVINCE_PREFIXES.binary_search(&prefix).is_ok() {
        return true;
    }
    prefix.parse::<u16>().is_ok_and(|code| ABROAD_PREFIXES.contains(&code))
}

impl fmt::Debug for NationalId {
    /// Prints the masked form only: the number is personal data.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("NationalId").field(&self.masked()).finish()
    }
}

impl fmt::Display for NationalId {
    /// The full number. Do not log it: use [`NationalId::masked`] or `Debug`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for NationalId {
    type Err = NationalIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NationalId::parse(s)
    }
}

impl TryFrom<String> for NationalId {
    type Error = NationalIdError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        NationalId::parse(&value)
    }
}

impl TryFrom<&str> for NationalId {
    type Error = NationalIdError;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        NationalId::parse(value)
    }
}

impl From<NationalId> for String {
    fn from(id: NationalId) -> String {
        id.0
    }
}

impl AsRef<str> for NationalId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Gender as encoded in the number or claimed by an identity provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Gender {
    Male,
    Female,
}

impl Gender {
    /// Reads a gender claim in common English or Vietnamese forms, case-insensitively and
    /// with or without diacritics: "male"/"m"/"nam", "female"/"f"/"nữ"/"nu" (also "nam giới",
    /// "nữ giới"). Numeric codes are deliberately not accepted: systems disagree on them
    /// (0/1 vs ISO 5218's 1/2), so a guess could invert the claim. Unknown -> `None`.
    pub fn from_claim(s: &str) -> Option<Gender> {
        use unicode_normalization::UnicodeNormalization;
        let normalized: String = s.trim().nfc().collect::<String>().to_lowercase();
        let words: Vec<&str> = normalized.split_whitespace().collect();
        match words.as_slice() {
            ["male" | "m" | "man" | "nam"] | ["nam", "giới" | "gioi"] => Some(Gender::Male),
            ["female" | "f" | "woman" | "nữ" | "nu"] | ["nữ" | "nu", "giới" | "gioi"] => {
                Some(Gender::Female)
            }
            _ => None,
        }
    }
}

/// A structural oddity of a number. Never a reason to block a login: flag it for review.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NationalIdWarning {
    /// The first three digits are neither one of the 63 province codes nor 101–295 (abroad).
    UnknownProvincePrefix { prefix: String },
    /// The encoded birth year lies after today's year, or more than 130 years before it.
    ImplausibleBirthYear { year: u16 },
    /// The encoded birth year differs from the year of a claimed birthdate.
    BirthYearMismatch { from_number: u16, from_birthdate: i32 },
    /// The encoded gender differs from a claimed gender.
    GenderMismatch { from_number: Gender, claimed: Gender },
}

impl NationalIdWarning {
    /// Stable snake_case code, equal to the serialised `kind` tag.
    pub fn code(&self) -> &'static str {
        match self {
            NationalIdWarning::UnknownProvincePrefix { .. } => "unknown_province_prefix",
            NationalIdWarning::ImplausibleBirthYear { .. } => "implausible_birth_year",
            NationalIdWarning::BirthYearMismatch { .. } => "birth_year_mismatch",
            NationalIdWarning::GenderMismatch { .. } => "gender_mismatch",
        }
    }
}

/// Why an input is not a personal identification number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NationalIdError {
    /// Nothing left after removing whitespace and separators.
    #[error("the personal identification number is empty")]
    Empty,
    /// 9 digits: an old ID card (CMND) number, not a personal ID number.
    #[error(
        "9 digits: this looks like an old ID card (CMND) number, not a 12-digit personal identification number"
    )]
    LooksLikeCmnd,
    /// Only digits, but not 12 of them (and not 9).
    #[error("a personal identification number has 12 digits, got {digits}")]
    WrongLength { digits: usize },
    /// A character that is neither a digit nor an accepted separator.
    #[error("invalid character {ch:?} in personal identification number: only digits are allowed")]
    InvalidCharacter { ch: char },
}

/// Classifies a legacy "ID number" field, which mixes 12-digit numbers, 9-digit CMND numbers
/// and passport numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LegacyIdentifier {
    /// A well-formed 12-digit personal identification number.
    NationalId(NationalId),
    /// A 9-digit old ID card number (normalised to ASCII digits). Not unique and not linked to
    /// the 12-digit number by any formula: keep it as an alias, never link by it.
    Cmnd(String),
    /// A passport number: 1–2 letters then 7–8 digits, uppercased, separators removed.
    Passport(String),
    /// Anything else, trimmed.
    Unrecognised(String),
}

/// Classifies a legacy identifier field. Passport: 1–2 letters + 7–8 digits (e.g. "C1234567",
/// "B12345678"), returned uppercase.
pub fn classify_legacy_identifier(input: &str) -> LegacyIdentifier {
    match NationalId::parse(input) {
        Ok(id) => return LegacyIdentifier::NationalId(id),
        Err(NationalIdError::LooksLikeCmnd) => {
            if let Ok(digits) = normalize_digits(input) {
                return LegacyIdentifier::Cmnd(digits);
            }
        }
        Err(_) => {}
    }
    if let Some(passport) = normalize_passport(input) {
        return LegacyIdentifier::Passport(passport);
    }
    LegacyIdentifier::Unrecognised(input.trim().to_owned())
}

/// Separators removed before checking the digits: whitespace (any Unicode White_Space, incl.
/// NBSP), zero-width spaces/joiners and BOM, dots, dashes/hyphens, underscores, and their
/// full-width forms.
fn is_separator(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '.' | '-'
                | '_'
                | '\u{200B}'..='\u{200D}'   // zero-width space, non-joiner, joiner
                | '\u{2060}'                // word joiner
                | '\u{FEFF}'                // BOM / zero-width no-break space
                | '\u{00AD}'                // soft hyphen
                | '\u{2010}'..='\u{2015}'   // hyphen .. horizontal bar
                | '\u{2212}'                // minus sign
                | '\u{FE58}'                // small em dash
                | '\u{FE63}'                // small hyphen-minus
                | '\u{FF0D}'                // full-width hyphen-minus
                | '\u{FF0E}'                // full-width full stop
                | '\u{FF3F}'                // full-width low line
                | '\u{00B7}'                // middle dot
                | '\u{2024}' // one dot leader
        )
}

/// Code points of the digit zero of every run of Unicode decimal digits (general category Nd,
/// Unicode 14.0). Each run holds the digits 0..=9 at consecutive code points. Sorted.
const DECIMAL_DIGIT_ZEROS: [u32; 66] = [
    0x0030, 0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0C66, 0x0CE6, 0x0D66,
    0x0DE6, 0x0E50, 0x0ED0, 0x0F20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90, 0x1B50,
    0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10, 0x104A0, 0x10D30,
    0x11066, 0x110F0, 0x11136, 0x111D0, 0x112F0, 0x11450, 0x114D0, 0x11650, 0x116C0, 0x11730, 0x118E0,
    0x11950, 0x11C50, 0x11D50, 0x11DA0, 0x16A60, 0x16AC0, 0x16B50, 0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC,
    0x1D7F6, 0x1E140, 0x1E2F0, 0x1E950, 0x1FBF0,
];

/// Maps any Unicode decimal digit (ASCII, full-width U+FF10..U+FF19, Arabic-Indic, …) to its
/// ASCII digit.
fn ascii_digit(c: char) -> Option<char> {
    let cp = u32::from(c);
    let run = match DECIMAL_DIGIT_ZEROS.binary_search(&cp) {
        Ok(i) => i,
        Err(0) => return None,
        Err(i) => i - 1,
    };
    let zero = *DECIMAL_DIGIT_ZEROS.get(run)?;
    let value = cp.checked_sub(zero)?;
    if value <= 9 { char::from_digit(value, 10) } else { None }
}

/// Strips separators and maps digits to ASCII. Fails on the first other character.
fn normalize_digits(input: &str) -> Result<String, NationalIdError> {
    let mut out = String::with_capacity(NATIONAL_ID_LEN);
    for c in input.chars() {
        if is_separator(c) {
            continue;
        }
        match ascii_digit(c) {
            Some(d) => out.push(d),
            None => return Err(NationalIdError::InvalidCharacter { ch: c }),
        }
    }
    Ok(out)
}

/// Passport number: 1–2 ASCII (or full-width) letters then 7–8 digits, separators removed,
/// uppercased. `None` if the input has another shape.
fn normalize_passport(input: &str) -> Option<String> {
    let mut out = String::with_capacity(10);
    for c in input.chars() {
        if is_separator(c) {
            continue;
        }
        let c = match c {
            '\u{FF21}'..='\u{FF3A}' | '\u{FF41}'..='\u{FF5A}' => {
                char::from_u32(u32::from(c) - 0xFF21 + u32::from('A'))?
            }
            _ => c,
        };
        if c.is_ascii_alphabetic() {
            out.push(c.to_ascii_uppercase());
        } else {
            out.push(ascii_digit(c)?);
        }
    }
    let letters = out.chars().take_while(char::is_ascii_alphabetic).count();
    let digits = out.len() - letters;
    let rest_all_digits = out.chars().skip(letters).all(|c| c.is_ascii_digit());
    ((1..=2).contains(&letters) && (7..=8).contains(&digits) && rest_all_digits).then_some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn numbers_in_free_text_are_masked_and_other_digits_kept() {
        assert_eq!(
            mask_in_text("CCCD 079082006631 checked; ticket 1733212345, 0790820066310 too long"),
            "CCCD 079******631 checked; ticket 1733212345, 0790820066310 too long"
        );
        assert_eq!(mask_in_text("{\"n\":\"074185001276\"}"), "{\"n\":\"074******276\"}");
        assert_eq!(mask_in_text("số 079082006631"), "số 079******631");
        assert_eq!(mask_in_text(""), "");
    }
    use proptest::prelude::*;
    use time::macros::date;

    const TODAY: time::Date = date!(2025 - 07 - 01);

    fn id(s: &str) -> NationalId {
        NationalId::parse(s).unwrap()
    }

    #[test]
    fn parse_accepts_plain_twelve_digits() {
        assert_eq!(id("079203001234").as_str(), "079203001234");
    }

    #[test]
    fn parse_strips_spaces_dots_dashes_and_underscores() {
        for input in [
            " 079 203 001 234 ",
            "079.203.001.234",
            "079-203-001-234",
            "079_203_001_234",
            "079\u{00A0}203\u{2009}001\u{202F}234",
            "079\u{2010}203\u{2013}001\u{2212}234",
            "079\u{2015}203\u{2011}001\u{2014}234",
            "\t079203001234\r\n",
            "\u{FEFF}079\u{200B}203001234",
        ] {
            assert_eq!(id(input).as_str(), "079203001234", "input {input:?}");
        }
    }

    #[test]
    fn parse_maps_full_width_and_other_unicode_digits() {
        assert_eq!(id("０７９２０３００１２３４").as_str(), "079203001234");
        assert_eq!(id("０７９ ２０３-001234").as_str(), "079203001234");
        // Arabic-Indic and Devanagari digits are decimal digits too.
        assert_eq!(id("٠٧٩٢٠٣٠٠١٢٣٤").as_str(), "079203001234");
        assert_eq!(id("०७९२०३००१२३४").as_str(), "079203001234");
    }

    #[test]
    fn parse_rejects_empty_and_separator_only_input() {
        assert_eq!(NationalId::parse(""), Err(NationalIdError::Empty));
        assert_eq!(NationalId::parse(" . - _ "), Err(NationalIdError::Empty));
    }

    #[test]
    fn parse_flags_nine_digits_as_cmnd() {
        assert_eq!(NationalId::parse("273456789"), Err(NationalIdError::LooksLikeCmnd));
        assert_eq!(NationalId::parse("273 456 789"), Err(NationalIdError::LooksLikeCmnd));
    }

    #[test]
    fn parse_rejects_eleven_and_thirteen_digits() {
        assert_eq!(NationalId::parse("07920300123"), Err(NationalIdError::WrongLength { digits: 11 }));
        assert_eq!(NationalId::parse("0792030012345"), Err(NationalIdError::WrongLength { digits: 13 }));
    }

    #[test]
    fn parse_rejects_letters_and_other_characters() {
        assert_eq!(NationalId::parse("07920300123A"), Err(NationalIdError::InvalidCharacter { ch: 'A' }));
        assert_eq!(NationalId::parse("C1234567"), Err(NationalIdError::InvalidCharacter { ch: 'C' }));
        assert_eq!(NationalId::parse("079/203/001/234"), Err(NationalIdError::InvalidCharacter { ch: '/' }));
        // Superscript digits are not decimal digits (category No).
        assert_eq!(
            NationalId::parse("07920300123\u{00B9}"),
            Err(NationalIdError::InvalidCharacter { ch: '\u{00B9}' })
        );
    }

    #[test]
    fn error_messages_are_readable_english() {
        assert_eq!(
            NationalIdError::WrongLength { digits: 11 }.to_string(),
            "a personal identification number has 12 digits, got 11"
        );
        assert!(NationalIdError::LooksLikeCmnd.to_string().contains("CMND"));
        assert!(NationalIdError::InvalidCharacter { ch: 'x' }.to_string().contains("'x'"));
    }

    #[test]
    fn from_str_and_try_from_go_through_parse() {
        let a: NationalId = "079 203 001 234".parse().unwrap();
        let b = NationalId::try_from(String::from("079-203-001-234")).unwrap();
        assert_eq!(a, b);
        assert!(NationalId::try_from("123").is_err());
    }

    #[test]
    fn decodes_province_code() {
        assert_eq!(id("079203001234").province_code(), "079");
        assert_eq!(id("001090001234").province_code(), "001");
    }

    #[test]
    fn decodes_birth_year_and_gender_for_every_century_digit() {
        let expected = [
            (0, 1903, Gender::Male),
            (1, 1903, Gender::Female),
            (2, 2003, Gender::Male),
            (3, 2003, Gender::Female),
            (4, 2103, Gender::Male),
            (5, 2103, Gender::Female),
            (6, 2203, Gender::Male),
            (7, 2203, Gender::Female),
            (8, 2303, Gender::Male),
            (9, 2303, Gender::Female),
        ];
        for (digit, year, gender) in expected {
            let n = id(&format!("079{digit}03001234"));
            assert_eq!(n.century_gender_digit(), digit);
            assert_eq!(n.birth_year(), year, "digit {digit}");
            assert_eq!(n.gender(), gender, "digit {digit}");
        }
    }

    #[test]
    fn decodes_documented_examples() {
        let n = id("079203001234");
        assert_eq!((n.birth_year(), n.gender()), (2003, Gender::Male));
        let n = id("074195001234");
        assert_eq!((n.birth_year(), n.gender()), (1995, Gender::Female));
        let n = id("077300001234");
        assert_eq!((n.birth_year(), n.gender()), (2000, Gender::Female));
        let n = id("079099001234");
        assert_eq!((n.birth_year(), n.gender()), (1999, Gender::Male));
    }

    #[test]
    fn consistent_number_has_no_warnings() {
        let n = id("079203001234");
        assert_eq!(n.warnings(Some(date!(2003 - 05 - 17)), Some(Gender::Male), TODAY), vec![]);
        assert_eq!(n.warnings(None, None, TODAY), vec![]);
        let n = id("074195001234");
        assert_eq!(n.warnings(Some(date!(1995 - 12 - 31)), Some(Gender::Female), TODAY), vec![]);
    }

    #[test]
    fn warns_on_unknown_province_prefix() {
        // 003 is not one of the 63 codes (there is no statistics code 03).
        let n = id("003203001234");
        let w = n.warnings(None, None, TODAY);
        assert_eq!(w, vec![NationalIdWarning::UnknownProvincePrefix { prefix: "003".into() }]);
        assert_eq!(w[0].code(), "unknown_province_prefix");
        for prefix in ["000", "097", "100", "296", "999"] {
            let n = id(&format!("{prefix}203001234"));
            assert_eq!(
                n.warnings(None, None, TODAY),
                vec![NationalIdWarning::UnknownProvincePrefix { prefix: prefix.into() }]
            );
        }
    }

    #[test]
    fn all_63_province_prefixes_are_known() {
        assert_eq!(PROVINCE_PREFIXES.len(), 63);
        assert!(PROVINCE_PREFIXES.windows(2).all(|w| w[0] < w[1]));
        for prefix in PROVINCE_PREFIXES {
            let n = id(&format!("{prefix}203001234"));
            assert_eq!(n.warnings(None, None, TODAY), vec![], "prefix {prefix}");
        }
    }

    #[test]
    fn abroad_prefixes_101_to_295_are_accepted_without_warning() {
        for prefix in ["101", "184", "295"] {
            let n = id(&format!("{prefix}203001234"));
            assert_eq!(n.warnings(None, None, TODAY), vec![], "prefix {prefix}");
        }
    }

    #[test]
    fn warns_on_implausible_birth_year() {
        // Born 2103: in the future.
        let n = id("079403001234");
        assert_eq!(
            n.warnings(None, None, TODAY),
            vec![NationalIdWarning::ImplausibleBirthYear { year: 2103 }]
        );
        // Born 2026, today is 2025: future.
        let n = id("079226001234");
        assert_eq!(
            n.warnings(None, None, TODAY),
            vec![NationalIdWarning::ImplausibleBirthYear { year: 2026 }]
        );
        // Born this year: fine.
        assert_eq!(id("079225001234").warnings(None, None, TODAY), vec![]);
        // 1900 at "today" 2031 is 131 years ago: implausible; 130 years is still fine.
        let n = id("079000001234");
        assert_eq!(
            n.warnings(None, None, date!(2031 - 01 - 01)),
            vec![NationalIdWarning::ImplausibleBirthYear { year: 1900 }]
        );
        assert_eq!(n.warnings(None, None, date!(2030 - 12 - 31)), vec![]);
        assert_eq!(NationalIdWarning::ImplausibleBirthYear { year: 1 }.code(), "implausible_birth_year");
    }

    #[test]
    fn warns_on_birthdate_year_mismatch() {
        let n = id("079203001234");
        let w = n.warnings(Some(date!(2002 - 12 - 31)), None, TODAY);
        assert_eq!(w, vec![NationalIdWarning::BirthYearMismatch { from_number: 2003, from_birthdate: 2002 }]);
        assert_eq!(w[0].code(), "birth_year_mismatch");
    }

    #[test]
    fn warns_on_gender_mismatch() {
        let n = id("079203001234");
        let w = n.warnings(None, Some(Gender::Female), TODAY);
        assert_eq!(
            w,
            vec![NationalIdWarning::GenderMismatch { from_number: Gender::Male, claimed: Gender::Female }]
        );
        assert_eq!(w[0].code(), "gender_mismatch");
    }

    #[test]
    fn reports_all_warnings_together() {
        let n = id("003403001234");
        let codes: Vec<_> = n
            .warnings(Some(date!(1990 - 01 - 01)), Some(Gender::Female), TODAY)
            .iter()
            .map(NationalIdWarning::code)
            .collect();
        assert_eq!(
            codes,
            ["unknown_province_prefix", "implausible_birth_year", "birth_year_mismatch", "gender_mismatch"]
        );
    }

    #[test]
    fn warnings_serialise_with_kind_tag_equal_to_code() {
        let w = NationalIdWarning::GenderMismatch { from_number: Gender::Male, claimed: Gender::Female };
        assert_eq!(
            serde_json::to_value(&w).unwrap(),
            serde_json::json!({"kind": "gender_mismatch", "from_number": "male", "claimed": "female"})
        );
        let w = NationalIdWarning::UnknownProvincePrefix { prefix: "003".into() };
        assert_eq!(serde_json::to_value(&w).unwrap()["kind"], serde_json::json!(w.code()));
    }

    #[test]
    fn debug_masks_the_number() {
        let n = id("079203001234");
        let debug = format!("{n:?}");
        assert!(debug.contains("079******234"), "{debug}");
        assert!(!debug.contains("079203001234"), "{debug}");
        let nested = format!("{:?}", Some(LegacyIdentifier::NationalId(n.clone())));
        assert!(!nested.contains("079203001234"), "{nested}");
        assert_eq!(n.masked(), "079******234");
    }

    #[test]
    fn display_prints_the_full_number() {
        assert_eq!(id("079 203 001 234").to_string(), "079203001234");
    }

    #[test]
    fn serde_round_trips_as_plain_string() {
        let n = id("079203001234");
        let json = serde_json::to_string(&n).unwrap();
        assert_eq!(json, "\"079203001234\"");
        let back: NationalId = serde_json::from_str(&json).unwrap();
        assert_eq!(back, n);
        // Deserialisation normalises through parse.
        let back: NationalId = serde_json::from_str("\"079 203 001 234\"").unwrap();
        assert_eq!(back, n);
    }

    #[test]
    fn serde_rejects_bad_numbers() {
        for bad in ["\"\"", "\"273456789\"", "\"07920300123\"", "\"07920300123X\"", "79203001234"] {
            assert!(serde_json::from_str::<NationalId>(bad).is_err(), "accepted {bad}");
        }
        let err = serde_json::from_str::<NationalId>("\"273456789\"").unwrap_err();
        assert!(err.to_string().contains("CMND"), "{err}");
    }

    #[test]
    fn gender_serialises_lowercase() {
        assert_eq!(serde_json::to_string(&Gender::Female).unwrap(), "\"female\"");
        assert_eq!(serde_json::from_str::<Gender>("\"male\"").unwrap(), Gender::Male);
    }

    #[test]
    fn gender_from_claim_accepts_english_and_vietnamese_forms() {
        for male in ["male", "Male", "MALE", " m ", "M", "nam", "Nam", "NAM", "nam giới"] {
            assert_eq!(Gender::from_claim(male), Some(Gender::Male), "{male:?}");
        }
        for female in
            ["female", "Female", "F", "f", "nữ", "Nữ", "NỮ", "Nu\u{31B}\u{303}", "nu", "NU", "nữ giới"]
        {
            assert_eq!(Gender::from_claim(female), Some(Gender::Female), "{female:?}");
        }
        for unknown in ["", "x", "other", "0", "1", "2", "unknown", "nam nữ"] {
            assert_eq!(Gender::from_claim(unknown), None, "{unknown:?}");
        }
    }

    #[test]
    fn classifies_twelve_digit_national_id() {
        assert_eq!(
            classify_legacy_identifier(" 079 203 001 234 "),
            LegacyIdentifier::NationalId(id("079203001234"))
        );
    }

    #[test]
    fn classifies_nine_digit_cmnd() {
        assert_eq!(classify_legacy_identifier("273 456 789"), LegacyIdentifier::Cmnd("273456789".into()));
        assert_eq!(
            classify_legacy_identifier("２７３４５６７８９"),
            LegacyIdentifier::Cmnd("273456789".into())
        );
    }

    #[test]
    fn classifies_passport_numbers_uppercased() {
        assert_eq!(classify_legacy_identifier("C1234567"), LegacyIdentifier::Passport("C1234567".into()));
        assert_eq!(classify_legacy_identifier("b12345678"), LegacyIdentifier::Passport("B12345678".into()));
        assert_eq!(
            classify_legacy_identifier(" ab 1234567 "),
            LegacyIdentifier::Passport("AB1234567".into())
        );
        assert_eq!(
            classify_legacy_identifier("Ｎ１２３４５６７"),
            LegacyIdentifier::Passport("N1234567".into())
        );
    }

    #[test]
    fn classifies_everything_else_as_unrecognised() {
        for other in [
            "",
            "12345",
            "07920300123",
            "C123456",
            "C123456789",
            "ABC1234567",
            "1234567C",
            "C12345A7",
            "n/a",
            "Đ1234567",
        ] {
            assert_eq!(
                classify_legacy_identifier(other),
                LegacyIdentifier::Unrecognised(other.trim().into()),
                "{other:?}"
            );
        }
        assert_eq!(classify_legacy_identifier("  foo  "), LegacyIdentifier::Unrecognised("foo".into()));
    }

    #[test]
    fn ascii_digit_maps_only_decimal_digits() {
        assert_eq!(ascii_digit('7'), Some('7'));
        assert_eq!(ascii_digit('\u{FF17}'), Some('7'));
        assert_eq!(ascii_digit('\u{1D7D5}'), Some('7')); // mathematical bold digit seven
        assert_eq!(ascii_digit('/'), None); // just below '0'
        assert_eq!(ascii_digit(':'), None); // just above '9'
        assert_eq!(ascii_digit('a'), None);
        assert_eq!(ascii_digit('\u{2167}'), None); // roman numeral eight (Nl)
        assert_eq!(ascii_digit('\u{0}'), None);
        assert_eq!(ascii_digit(char::MAX), None);
    }

    /// A separator accepted by the normaliser.
    fn separator() -> impl Strategy<Value = char> {
        prop::sample::select(vec![
            ' ', '\t', '\u{00A0}', '.', '-', '_', '\u{2010}', '\u{2011}', '\u{2012}', '\u{2013}', '\u{2014}',
            '\u{2015}', '\u{2212}', '\u{202F}', '\u{3000}',
        ])
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in any::<String>()) {
            let _ = NationalId::parse(&s);
            let _ = classify_legacy_identifier(&s);
        }

        #[test]
        fn parse_never_panics_on_digit_heavy_input(s in "[0-9０-９ .\\-_A-Za-z]{0,20}") {
            if let Ok(n) = NationalId::parse(&s) {
                prop_assert_eq!(n.as_str().len(), 12);
                prop_assert!(n.as_str().bytes().all(|b| b.is_ascii_digit()));
                let _ = n.warnings(None, None, TODAY);
            }
        }

        #[test]
        fn any_twelve_ascii_digits_round_trip(s in "[0-9]{12}") {
            let n = NationalId::parse(&s).unwrap();
            prop_assert_eq!(n.as_str(), s.as_str());
            prop_assert_eq!(n.to_string(), s.clone());
            let json = serde_json::to_string(&n).unwrap();
            let back: NationalId = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(&back, &n);
            prop_assert_eq!(classify_legacy_identifier(&s), LegacyIdentifier::NationalId(n));
        }

        #[test]
        fn separators_and_full_width_digits_do_not_change_the_number(
            s in "[0-9]{12}",
            full_width in prop::collection::vec(any::<bool>(), 12),
            seps in prop::collection::vec(prop::collection::vec(separator(), 0..3), 13),
        ) {
            let mut noisy = String::new();
            for (i, c) in s.chars().enumerate() {
                noisy.extend(&seps[i]);
                if full_width[i] {
                    noisy.push(char::from_u32(u32::from(c) - u32::from('0') + 0xFF10).unwrap());
                } else {
                    noisy.push(c);
                }
            }
            noisy.extend(&seps[12]);
            let parsed = NationalId::parse(&noisy).unwrap();
            prop_assert_eq!(parsed.as_str(), s.as_str());
        }
    }
}
