//! Thread charts: the colours a file names by index. RGB values, names and catalogue numbers
//! as tabulated by pyembroidery (`EmbThreadPec`, `EmbThreadJef`), which follow the brands'
//! charts.

use super::Thread;

#[derive(Debug, Clone, Copy)]
pub(crate) struct PaletteEntry {
    rgb: u32,
    name: &'static str,
    catalog: &'static str,
}

impl PaletteEntry {
    const fn new(rgb: u32, name: &'static str, catalog: &'static str) -> Self {
        Self { rgb, name, catalog }
    }

    fn thread(&self) -> Thread {
        let [_, r, g, b] = self.rgb.to_be_bytes();
        Thread {
            rgb: [r, g, b],
            name: Some(self.name.to_string()),
            catalog: Some(self.catalog.to_string()),
        }
    }
}

/// The Brother thread of a PEC colour index (taken modulo the chart's 65 entries, as
/// pyembroidery does); `None` for index 0, which names no colour.
pub(super) fn brother(index: u8) -> Option<Thread> {
    BROTHER_PEC[usize::from(index) % BROTHER_PEC.len()].map(|e| e.thread())
}

/// The Janome thread of a JEF colour index (its absolute value modulo the chart's size, as
/// pyembroidery does); `None` for index 0, which JEF uses for a stop with the same thread.
pub(super) fn janome(index: i32) -> Option<Thread> {
    let i = index.unsigned_abs() as usize % JANOME_JEF.len();
    JANOME_JEF[i].map(|e| e.thread())
}

/// Brother's PEC palette: index 0 is undefined, 1..=64 the stock thread colours.
pub(crate) const BROTHER_PEC: [Option<PaletteEntry>; 65] = [
    None,
    Some(PaletteEntry::new(0x0E1F7C, "Prussian Blue", "1")),
    Some(PaletteEntry::new(0x0A55A3, "Blue", "2")),
    Some(PaletteEntry::new(0x008777, "Teal Green", "3")),
    Some(PaletteEntry::new(0x4B6BAF, "Cornflower Blue", "4")),
    Some(PaletteEntry::new(0xED171F, "Red", "5")),
    Some(PaletteEntry::new(0xD15C00, "Reddish Brown", "6")),
    Some(PaletteEntry::new(0x913697, "Magenta", "7")),
    Some(PaletteEntry::new(0xE49ACB, "Light Lilac", "8")),
    Some(PaletteEntry::new(0x915FAC, "Lilac", "9")),
    Some(PaletteEntry::new(0x9ED67D, "Mint Green", "10")),
    Some(PaletteEntry::new(0xE8A900, "Deep Gold", "11")),
    Some(PaletteEntry::new(0xFEBA35, "Orange", "12")),
    Some(PaletteEntry::new(0xFFFF00, "Yellow", "13")),
    Some(PaletteEntry::new(0x70BC1F, "Lime Green", "14")),
    Some(PaletteEntry::new(0xBA9800, "Brass", "15")),
    Some(PaletteEntry::new(0xA8A8A8, "Silver", "16")),
    Some(PaletteEntry::new(0x7D6F00, "Russet Brown", "17")),
    Some(PaletteEntry::new(0xFFFFB3, "Cream Brown", "18")),
    Some(PaletteEntry::new(0x4F5556, "Pewter", "19")),
    Some(PaletteEntry::new(0x000000, "Black", "20")),
    Some(PaletteEntry::new(0x0B3D91, "Ultramarine", "21")),
    Some(PaletteEntry::new(0x770176, "Royal Purple", "22")),
    Some(PaletteEntry::new(0x293133, "Dark Gray", "23")),
    Some(PaletteEntry::new(0x2A1301, "Dark Brown", "24")),
    Some(PaletteEntry::new(0xF64A8A, "Deep Rose", "25")),
    Some(PaletteEntry::new(0xB27624, "Light Brown", "26")),
    Some(PaletteEntry::new(0xFCBBC5, "Salmon Pink", "27")),
    Some(PaletteEntry::new(0xFE370F, "Vermilion", "28")),
    Some(PaletteEntry::new(0xF0F0F0, "White", "29")),
    Some(PaletteEntry::new(0x6A1C8A, "Violet", "30")),
    Some(PaletteEntry::new(0xA8DDC4, "Seacrest", "31")),
    Some(PaletteEntry::new(0x2584BB, "Sky Blue", "32")),
    Some(PaletteEntry::new(0xFEB343, "Pumpkin", "33")),
    Some(PaletteEntry::new(0xFFF36B, "Cream Yellow", "34")),
    Some(PaletteEntry::new(0xD0A660, "Khaki", "35")),
    Some(PaletteEntry::new(0xD15400, "Clay Brown", "36")),
    Some(PaletteEntry::new(0x66BA49, "Leaf Green", "37")),
    Some(PaletteEntry::new(0x134A46, "Peacock Blue", "38")),
    Some(PaletteEntry::new(0x878787, "Gray", "39")),
    Some(PaletteEntry::new(0xD8CCC6, "Warm Gray", "40")),
    Some(PaletteEntry::new(0x435607, "Dark Olive", "41")),
    Some(PaletteEntry::new(0xFDD9DE, "Flesh Pink", "42")),
    Some(PaletteEntry::new(0xF993BC, "Pink", "43")),
    Some(PaletteEntry::new(0x003822, "Deep Green", "44")),
    Some(PaletteEntry::new(0xB2AFD4, "Lavender", "45")),
    Some(PaletteEntry::new(0x686AB0, "Wisteria Violet", "46")),
    Some(PaletteEntry::new(0xEFE3B9, "Beige", "47")),
    Some(PaletteEntry::new(0xF73866, "Carmine", "48")),
    Some(PaletteEntry::new(0xB54B64, "Amber Red", "49")),
    Some(PaletteEntry::new(0x132B1A, "Olive Green", "50")),
    Some(PaletteEntry::new(0xC70156, "Dark Fuchsia", "51")),
    Some(PaletteEntry::new(0xFE9E32, "Tangerine", "52")),
    Some(PaletteEntry::new(0xA8DEEB, "Light Blue", "53")),
    Some(PaletteEntry::new(0x00673E, "Emerald Green", "54")),
    Some(PaletteEntry::new(0x4E2990, "Purple", "55")),
    Some(PaletteEntry::new(0x2F7E20, "Moss Green", "56")),
    Some(PaletteEntry::new(0xFFCCCC, "Flesh Pink", "57")),
    Some(PaletteEntry::new(0xFFD911, "Harvest Gold", "58")),
    Some(PaletteEntry::new(0x095BA6, "Electric Blue", "59")),
    Some(PaletteEntry::new(0xF0F970, "Lemon Yellow", "60")),
    Some(PaletteEntry::new(0xE3F35B, "Fresh Green", "61")),
    Some(PaletteEntry::new(0xFF9900, "Orange", "62")),
    Some(PaletteEntry::new(0xFFF08D, "Cream Yellow", "63")),
    Some(PaletteEntry::new(0xFFC8C8, "Applique", "64")),
];

/// Janome's JEF palette: index 0 is a placeholder (a stop, same thread), then the thread colours.
pub(crate) const JANOME_JEF: [Option<PaletteEntry>; 79] = [
    None,
    Some(PaletteEntry::new(0x000000, "Black", "002")),
    Some(PaletteEntry::new(0xFFFFFF, "White", "001")),
    Some(PaletteEntry::new(0xFFFF17, "Yellow", "204")),
    Some(PaletteEntry::new(0xFF6600, "Orange", "203")),
    Some(PaletteEntry::new(0x2F5933, "Olive Green", "219")),
    Some(PaletteEntry::new(0x237336, "Green", "226")),
    Some(PaletteEntry::new(0x65C2C8, "Sky", "217")),
    Some(PaletteEntry::new(0xAB5A96, "Purple", "208")),
    Some(PaletteEntry::new(0xF669A0, "Pink", "201")),
    Some(PaletteEntry::new(0xFF0000, "Red", "225")),
    Some(PaletteEntry::new(0xB1704E, "Brown", "214")),
    Some(PaletteEntry::new(0x0B2F84, "Blue", "207")),
    Some(PaletteEntry::new(0xE4C35D, "Gold", "003")),
    Some(PaletteEntry::new(0x481A05, "Dark Brown", "205")),
    Some(PaletteEntry::new(0xAC9CC7, "Pale Violet", "209")),
    Some(PaletteEntry::new(0xFCF294, "Pale Yellow", "210")),
    Some(PaletteEntry::new(0xF999B7, "Pale Pink", "211")),
    Some(PaletteEntry::new(0xFAB381, "Peach", "212")),
    Some(PaletteEntry::new(0xC9A480, "Beige", "213")),
    Some(PaletteEntry::new(0x970533, "Wine Red", "215")),
    Some(PaletteEntry::new(0xA0B8CC, "Pale Sky", "216")),
    Some(PaletteEntry::new(0x7FC21C, "Yellow Green", "218")),
    Some(PaletteEntry::new(0xE5E5E5, "Silver Gray", "220")),
    Some(PaletteEntry::new(0x889B9B, "Gray", "221")),
    Some(PaletteEntry::new(0x98D6BD, "Pale Aqua", "227")),
    Some(PaletteEntry::new(0xB2E1E3, "Baby Blue", "228")),
    Some(PaletteEntry::new(0x368BA0, "Powder Blue", "229")),
    Some(PaletteEntry::new(0x4F83AB, "Bright Blue", "230")),
    Some(PaletteEntry::new(0x386A91, "Slate Blue", "231")),
    Some(PaletteEntry::new(0x071650, "Navy Blue", "232")),
    Some(PaletteEntry::new(0xF999A2, "Salmon Pink", "233")),
    Some(PaletteEntry::new(0xF9676B, "Coral", "234")),
    Some(PaletteEntry::new(0xE3311F, "Burnt Orange", "235")),
    Some(PaletteEntry::new(0xE2A188, "Cinnamon", "236")),
    Some(PaletteEntry::new(0xB59474, "Umber", "237")),
    Some(PaletteEntry::new(0xE4CF99, "Blond", "238")),
    Some(PaletteEntry::new(0xFFCB00, "Sunflower", "239")),
    Some(PaletteEntry::new(0xE1ADD4, "Orchid Pink", "240")),
    Some(PaletteEntry::new(0xC3007E, "Peony Purple", "241")),
    Some(PaletteEntry::new(0x80004B, "Burgundy", "242")),
    Some(PaletteEntry::new(0x540571, "Royal Purple", "243")),
    Some(PaletteEntry::new(0xB10525, "Cardinal Red", "244")),
    Some(PaletteEntry::new(0xCAE0C0, "Opal Green", "245")),
    Some(PaletteEntry::new(0x899856, "Moss Green", "246")),
    Some(PaletteEntry::new(0x5C941A, "Meadow Green", "247")),
    Some(PaletteEntry::new(0x003114, "Dark Green", "248")),
    Some(PaletteEntry::new(0x5DAE94, "Aquamarine", "249")),
    Some(PaletteEntry::new(0x4CBF8F, "Emerald Green", "250")),
    Some(PaletteEntry::new(0x007772, "Peacock Green", "251")),
    Some(PaletteEntry::new(0x595B61, "Dark Gray", "252")),
    Some(PaletteEntry::new(0xFFFFF2, "Ivory White", "253")),
    Some(PaletteEntry::new(0xB15818, "Hazel", "254")),
    Some(PaletteEntry::new(0xCB8A07, "Toast", "255")),
    Some(PaletteEntry::new(0x986C80, "Salmon", "256")),
    Some(PaletteEntry::new(0x98692D, "Cocoa Brown", "257")),
    Some(PaletteEntry::new(0x4D3419, "Sienna", "258")),
    Some(PaletteEntry::new(0x4C330B, "Sepia", "259")),
    Some(PaletteEntry::new(0x33200A, "Dark Sepia", "260")),
    Some(PaletteEntry::new(0x523A97, "Violet Blue", "261")),
    Some(PaletteEntry::new(0x0D217E, "Blue Ink", "262")),
    Some(PaletteEntry::new(0x1E77AC, "Sola Blue", "263")),
    Some(PaletteEntry::new(0xB2DD53, "Green Dust", "264")),
    Some(PaletteEntry::new(0xF33689, "Crimson", "265")),
    Some(PaletteEntry::new(0xDE649E, "Floral Pink", "266")),
    Some(PaletteEntry::new(0x984161, "Wine", "267")),
    Some(PaletteEntry::new(0x4C5612, "Olive Drab", "268")),
    Some(PaletteEntry::new(0x4C881F, "Meadow", "269")),
    Some(PaletteEntry::new(0xE4DE79, "Mustard", "270")),
    Some(PaletteEntry::new(0xCB8A1A, "Yellow Ocher", "271")),
    Some(PaletteEntry::new(0xCBA21C, "Old Gold", "272")),
    Some(PaletteEntry::new(0xFF9805, "Honey Dew", "273")),
    Some(PaletteEntry::new(0xFCB257, "Tangerine", "274")),
    Some(PaletteEntry::new(0xFFE505, "Canary Yellow", "275")),
    Some(PaletteEntry::new(0xF0331F, "Vermilion", "202")),
    Some(PaletteEntry::new(0x1A842D, "Bright Green", "206")),
    Some(PaletteEntry::new(0x386CAE, "Ocean Blue", "222")),
    Some(PaletteEntry::new(0xE3C4B4, "Beige Gray", "223")),
    Some(PaletteEntry::new(0xE3AC81, "Bamboo", "224")),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brother_index_20_is_black_and_index_0_names_no_colour() {
        let black = brother(20).unwrap();
        assert_eq!(black.hex(), "#000000");
        assert_eq!(black.name.as_deref(), Some("Black"));
        assert!(brother(0).is_none());
        assert_eq!(BROTHER_PEC.len(), 65);
    }

    #[test]
    fn janome_index_1_is_black_002_and_indices_wrap() {
        let t = janome(1).unwrap();
        assert_eq!(
            (t.hex().as_str(), t.catalog.as_deref()),
            ("#000000", Some("002"))
        );
        assert_eq!(janome(-1), janome(1));
        assert_eq!(janome(JANOME_JEF.len() as i32 + 2), janome(2));
        assert!(janome(0).is_none());
    }
}
