//! Vietnamese full names: normalisation for storage and keys for finding candidate matches.
//!
//! A full name is kept as given, family name first; it is never split into given and family
//! parts (split fields from legacy systems are not trustworthy).
//!
//! Legacy systems store the same name in different ways: composed (NFC) or decomposed (NFD)
//! Unicode, old-style or new-style tone-mark placement ("Hòa" / "Hoà"), look-alike letters for
//! Đ (U+0110 Đ, U+00D0 Ð, U+0189 Ɖ), any case and stray whitespace. [`match_key`] folds exactly
//! these differences and keeps everything that distinguishes one name from another (tones and
//! vowel qualities: "Thanh" ≠ "Thạnh", "Thu" ≠ "Thư").
//!
//! Names only ever **suggest** candidates for review. Two people may share a name, so an equal
//! key is never a reason to link accounts: linking is by personal identification number plus
//! birthdate, decided elsewhere. [`search_key`] is looser still (it drops all diacritics) and
//! collides different names; use it only for search suggestions.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// For storage/display: Unicode NFC, trimmed, internal whitespace (any Unicode White_Space,
/// incl. NBSP) collapsed to one ASCII space. Keeps case and diacritics. Family name first:
/// never split.
pub fn normalize_full_name(input: &str) -> String {
    let composed: String = input.nfc().collect();
    let mut out = String::with_capacity(composed.len());
    for word in composed.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Vietnamese tone marks (as combining characters after NFD) and the marker that replaces each
/// at the end of its syllable. Digits follow the VNI convention: 1 sắc, 2 huyền, 3 hỏi, 4 ngã,
/// 5 nặng. The level tone (ngang) has no mark and no marker.
const TONE_MARKS: [(char, char); 5] = [
    ('\u{0301}', '1'), // acute: sắc
    ('\u{0300}', '2'), // grave: huyền
    ('\u{0309}', '3'), // hook above: hỏi
    ('\u{0303}', '4'), // tilde: ngã
    ('\u{0323}', '5'), // dot below: nặng
];

fn tone_marker(c: char) -> Option<char> {
    TONE_MARKS.iter().find(|(mark, _)| *mark == c).map(|(_, marker)| *marker)
}

/// Folds the look-alikes of đ (after lowercasing): đ U+0111, ð U+00F0 (from Ð U+00D0), ɖ U+0256
/// (from Ɖ U+0189).
fn fold_d(c: char) -> char {
    match c {
        '\u{00F0}' | '\u{0256}' => 'đ',
        _ => c,
    }
}

/// Compatibility-decomposed (NFKD), lowercased form of the input, decomposed again because a
/// lowercase mapping may produce characters that decompose.
fn decomposed_lowercase(input: &str) -> impl Iterator<Item = char> {
    let lower = input.nfkd().collect::<String>().to_lowercase();
    lower.nfkd().collect::<Vec<char>>().into_iter()
}

/// Matching key: equal for spellings of the same name that legacy systems store differently
/// (NFC vs NFD, compatibility forms such as full-width letters, tone-mark placement "Hòa" ==
/// "Hoà" / "Thúy" == "Thuý" / "Khỏe" == "Khoẻ", the look-alikes Đ U+0110, Ð U+00D0, Ɖ U+0189,
/// đ and ɖ U+0256, case, whitespace). Keeps the difference between tones and vowel qualities:
/// "Thanh" != "Thạnh", "Lê" != "Le" != "Lệ", "Thu" != "Thư".
///
/// Each syllable (a run of letters and combining marks) is decomposed; its tone marks (grave,
/// acute, tilde, hook above, dot below) are taken out, the rest (base letters with circumflex,
/// breve or horn) is lowercased and recomposed (NFC), and a tone digit (1 sắc, 2 huyền, 3 hỏi,
/// 4 ngã, 5 nặng; none for the level tone) is appended at the end of the syllable, so where
/// the mark sat no longer matters: "Nguyễn Thị Thúy" → "nguyên4 thi5 thuy1". Whitespace runs
/// become one ASCII space; other characters are kept. The key is idempotent
/// (`match_key(&match_key(s)) == match_key(s)`).
///
/// The key only suggests candidates for review; it never links accounts. If keys are stored,
/// treat the format as versioned: a change means recomputing them.
pub fn match_key(input: &str) -> String {
    let mut out = String::with_capacity(input.len() + 8);
    let mut syllable = String::new();
    let mut tones: Vec<char> = Vec::new();
    let mut pending_space = false;

    for c in decomposed_lowercase(input) {
        if let Some(marker) = tone_marker(c) {
            tones.push(marker);
        } else if c.is_alphabetic() || is_combining_mark(c) {
            syllable.push(fold_d(c));
        } else {
            flush_syllable(&mut out, &mut syllable, &mut tones, &mut pending_space);
            if c.is_whitespace() {
                pending_space = !out.is_empty();
            } else {
                push_token(&mut out, &mut pending_space, c);
            }
        }
    }
    flush_syllable(&mut out, &mut syllable, &mut tones, &mut pending_space);
    out
}

fn push_token(out: &mut String, pending_space: &mut bool, c: char) {
    if *pending_space {
        out.push(' ');
        *pending_space = false;
    }
    out.push(c);
}

fn flush_syllable(out: &mut String, syllable: &mut String, tones: &mut Vec<char>, pending_space: &mut bool) {
    if syllable.is_empty() && tones.is_empty() {
        return;
    }
    if *pending_space {
        out.push(' ');
        *pending_space = false;
    }
    out.extend(syllable.nfc());
    // A well-formed syllable has at most one tone; sort and deduplicate stray extra marks so
    // that their order and repetition do not matter either.
    tones.sort_unstable();
    tones.dedup();
    out.extend(tones.iter());
    syllable.clear();
    tones.clear();
}

/// Search key: strips **all** diacritics (tones and vowel qualities), folds đ and its
/// look-alikes to d, lowercases and collapses whitespace.
///
/// This deliberately collides different names: "Thanh An" and "Thạnh An" (two different
/// communes, and two different given names) both become "thanh an", as do "Thu" and "Thư",
/// "Lê" and "Le". So use it only to *suggest* candidates in a search box (for users typing
/// without diacritics); never to match, merge or link records. Use [`match_key`] to find
/// review candidates.
pub fn search_key(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    let mut pending_space = false;
    for c in decomposed_lowercase(input) {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
        } else if is_combining_mark(c) {
            continue;
        } else {
            let c = match fold_d(c) {
                'đ' => 'd',
                other => other,
            };
            push_token(&mut out, &mut pending_space, c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use proptest::prelude::*;

    fn nfd(s: &str) -> String {
        s.nfd().collect()
    }

    fn nfc(s: &str) -> String {
        s.nfc().collect()
    }

    #[test]
    fn normalize_full_name_composes_to_nfc() {
        let decomposed = nfd("Nguyễn Thị Thúy");
        assert_ne!(decomposed, "Nguyễn Thị Thúy");
        assert_eq!(normalize_full_name(&decomposed), "Nguyễn Thị Thúy");
        // "Nguyễn" is 6 code points composed.
        assert_eq!(normalize_full_name(&nfd("Nguyễn")).chars().count(), 6, "NFC form");
    }

    #[test]
    fn normalize_full_name_trims_and_collapses_whitespace() {
        assert_eq!(normalize_full_name("  Trần\t\tVăn \u{00A0} An\n"), "Trần Văn An");
        assert_eq!(normalize_full_name("   "), "");
    }

    #[test]
    fn normalize_full_name_keeps_case_diacritics_and_order() {
        assert_eq!(normalize_full_name("NGUYỄN thị Hoà"), "NGUYỄN thị Hoà");
        // Tone placement is not changed for storage: keep the name as given.
        assert_ne!(normalize_full_name("Hoà"), normalize_full_name("Hòa"));
    }

    #[test]
    fn match_key_equal_for_nfd_and_nfc() {
        let name = "Nguyễn Thị Thúy Hằng Phượng Đặng";
        assert_eq!(match_key(&nfd(name)), match_key(&nfc(name)));
        assert_eq!(match_key(&nfd(name)), match_key(name));
    }

    #[test]
    fn match_key_ignores_tone_mark_placement() {
        assert_eq!(match_key("Hòa"), match_key("Hoà"));
        assert_eq!(match_key("Thúy"), match_key("Thuý"));
        assert_eq!(match_key("Khỏe"), match_key("Khoẻ"));
        assert_eq!(match_key("Thủy"), match_key("Thuỷ"));
        assert_eq!(match_key("Hòa"), "hoa2");
    }

    #[test]
    fn match_key_ignores_case() {
        assert_eq!(match_key("Nguyễn Thị Thúy"), match_key("NGUYỄN THỊ THUÝ"));
        assert_eq!(match_key("Nguyễn Thị Thúy"), "nguyên4 thi5 thuy1");
    }

    #[test]
    fn match_key_folds_d_look_alikes() {
        let expected = match_key("Đặng");
        for variant in ["\u{00D0}ặng", "đặng", "\u{0189}ặng", "\u{0256}ặng", "ĐẶNG"] {
            assert_eq!(match_key(variant), expected, "{variant:?}");
        }
        // But Đ is not D.
        assert_ne!(match_key("Đào"), match_key("Dào"));
    }

    #[test]
    fn match_key_keeps_different_tones_apart() {
        assert_ne!(match_key("Thanh"), match_key("Thạnh"));
        assert_ne!(match_key("Lê"), match_key("Lệ"));
        let tones = ["Ma", "Má", "Mà", "Mả", "Mã", "Mạ"];
        for (i, a) in tones.iter().enumerate() {
            for b in &tones[i + 1..] {
                assert_ne!(match_key(a), match_key(b), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn match_key_keeps_different_vowel_qualities_apart() {
        assert_ne!(match_key("Thu"), match_key("Thư"));
        assert_ne!(match_key("Lê"), match_key("Le"));
        assert_ne!(match_key("Le"), match_key("Lệ"));
        let qualities = ["Tan", "Tân", "Tăn"];
        assert_ne!(match_key(qualities[0]), match_key(qualities[1]));
        assert_ne!(match_key(qualities[1]), match_key(qualities[2]));
        assert_ne!(match_key("Cơ"), match_key("Cô"));
    }

    #[test]
    fn match_key_tone_stays_with_its_syllable() {
        // The tone marker belongs to the syllable that carried it.
        assert_ne!(match_key("Thành An"), match_key("Thanh Àn"));
        assert_ne!(match_key("Thanh Hà"), match_key("Thanh Ha"));
    }

    #[test]
    fn match_key_collapses_whitespace() {
        assert_eq!(match_key("  Trần \u{00A0}\t Văn   An "), match_key("Trần Văn An"));
        assert_eq!(match_key("Trần Văn An"), "trân2 văn an");
        assert_eq!(match_key(""), "");
        assert_eq!(match_key(" \t "), "");
    }

    #[test]
    fn match_key_folds_full_width_letters() {
        assert_eq!(match_key("ＬＥ Ｖăn"), match_key("Le Văn"));
    }

    #[test]
    fn search_key_strips_all_diacritics() {
        assert_eq!(search_key("Nguyễn Thị Thúy"), "nguyen thi thuy");
        assert_eq!(search_key(&nfd("  ĐẶNG  Văn Ð\u{00C0}O ")), "dang van dao");
        assert_eq!(search_key("Thư"), search_key("Thu"));
    }

    #[test]
    fn search_key_collides_different_names_so_it_must_never_link() {
        // "Thanh An" and "Thạnh An" are different communes (and different names): the search
        // key cannot tell them apart, which is why it may only suggest candidates...
        assert_eq!(search_key("Thanh An"), search_key("Thạnh An"));
        // ...while the match key keeps them apart.
        assert_ne!(match_key("Thanh An"), match_key("Thạnh An"));
    }

    /// Characters from Vietnamese names in composed and decomposed forms, both cases, the
    /// look-alikes and some whitespace.
    fn vietnamese_char() -> impl Strategy<Value = String> {
        let pieces: Vec<String> = [
            "a", "ă", "â", "e", "ê", "i", "o", "ô", "ơ", "u", "ư", "y", "đ", "Đ", "Ð", "ɖ", "n", "g", "h",
            "t", "N", "H", "Ư", "Ơ", "Ă", "á", "ờ", "ễ", "ự", "ỷ", "Ạ", " ", "  ", "\u{00A0}", "\t",
            "\u{0300}", "\u{0301}", "\u{0302}", "\u{0303}", "\u{0306}", "\u{0309}", "\u{031B}", "\u{0323}",
            "-", "'", "1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        prop::sample::select(pieces)
    }

    fn vietnamese_string() -> impl Strategy<Value = String> {
        prop::collection::vec(vietnamese_char(), 0..24).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn keys_never_panic(s in any::<String>()) {
            let _ = match_key(&s);
            let _ = search_key(&s);
            let _ = normalize_full_name(&s);
        }

        #[test]
        fn match_key_is_idempotent(s in any::<String>()) {
            let k = match_key(&s);
            prop_assert_eq!(match_key(&k), k);
        }

        #[test]
        fn match_key_is_idempotent_on_vietnamese_text(s in vietnamese_string()) {
            let k = match_key(&s);
            prop_assert_eq!(match_key(&k), k);
        }

        #[test]
        fn match_key_same_for_nfd_and_nfc(s in any::<String>()) {
            prop_assert_eq!(match_key(&nfd(&s)), match_key(&nfc(&s)));
        }

        #[test]
        fn match_key_same_for_nfd_and_nfc_of_vietnamese_text(s in vietnamese_string()) {
            prop_assert_eq!(match_key(&nfd(&s)), match_key(&nfc(&s)));
            prop_assert_eq!(match_key(&s), match_key(&s.to_uppercase()));
        }

        #[test]
        fn normalize_full_name_is_idempotent(s in any::<String>()) {
            let n = normalize_full_name(&s);
            prop_assert_eq!(normalize_full_name(&n), n.clone());
            prop_assert_eq!(match_key(&n), match_key(&s));
        }

        #[test]
        fn search_key_is_idempotent(s in any::<String>()) {
            let k = search_key(&s);
            prop_assert_eq!(search_key(&k), k);
        }
    }
}
