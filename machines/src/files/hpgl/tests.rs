use super::*;

fn summary(text: &str) -> HpglSummary {
    analyze(text.as_bytes(), &CutterSettings::default(), None)
        .unwrap()
        .summary
}

#[test]
fn a_square_is_one_stroke_of_four_sides_with_its_extent_in_mm() {
    // 40 mm square cut from (10, 10) mm, at 10 cm/s.
    let s = summary("IN;VS10;PU400,400;PD2000,400,2000,2000,400,2000,400,400;PU0,0;");
    assert_eq!(s.strokes, 1);
    assert_eq!(s.cut_mm, 160.0);
    assert_eq!(s.travel_mm, (2.0 * 10f64.hypot(10.0) * 10.0).round() / 10.0);
    let e = s.extent.unwrap();
    assert_eq!(
        (e.min_x_mm, e.min_y_mm, e.max_x_mm, e.max_y_mm),
        (10.0, 10.0, 50.0, 50.0)
    );
    assert_eq!((s.width_mm, s.height_mm), (40.0, 40.0));
    assert_eq!(s.speeds_cm_s, vec![10.0]);
    // 160 mm at 100 mm/s, 28.3 mm at 500 mm/s, two blade changes of 0.05 s.
    assert_eq!(s.time.cutting_s, 1.6);
    assert_eq!(s.time.pen_changes_s, 0.1);
    assert_eq!(s.estimate_s, 1.8);
    assert!(s.issues.is_empty(), "{:?}", s.issues);
}

#[test]
fn relative_moves_follow_from_the_current_position() {
    let a = summary("IN;PU100,100;PD;PR400,0,0,400,-400,0,0,-400;PU;");
    let b = summary("IN;PU100,100;PD500,100,500,500,100,500,100,100;PU;");
    assert_eq!(a.cut_mm, b.cut_mm);
    assert_eq!(a.extent, b.extent);
    assert_eq!(a.strokes, 1);
}

#[test]
fn without_vs_the_cutters_own_speed_is_used() {
    let settings = CutterSettings {
        cut_speed_cm_s: 5.0,
        ..CutterSettings::default()
    };
    let s = analyze(&b"IN;PD0,2000;PU;"[..], &settings, None)
        .unwrap()
        .summary;
    // 50 mm at 50 mm/s.
    assert_eq!(s.time.cutting_s, 1.0);
    let s = analyze(&b"IN;VS25;IN;PD0,2000;"[..], &settings, None)
        .unwrap()
        .summary;
    assert_eq!(s.time.cutting_s, 1.0, "IN forgets the file's speed");
}

#[test]
fn cuts_past_the_media_are_measured_on_each_edge() {
    let settings = CutterSettings {
        media: Some(Media {
            width_mm: 100.0,
            length_mm: None,
        }),
        ..CutterSettings::default()
    };
    let s = analyze(&b"IN;PU-40,0;PD8000,4400;PU;"[..], &settings, None)
        .unwrap()
        .summary;
    let fit = s.media_fit.unwrap();
    assert!(!fit.fits);
    assert_eq!(fit.past_left_mm, 1.0);
    assert_eq!(fit.past_top_mm, 10.0);
    assert_eq!(fit.past_right_mm, 0.0, "a roll has no end");
    let s = analyze(&b"IN;PU0,0;PD400,400;"[..], &settings, None)
        .unwrap()
        .summary;
    assert!(s.media_fit.unwrap().fits);
}

#[test]
fn unknown_instructions_labels_and_junk_are_findings() {
    let s = summary("IN;\nSC0,100,0,100;\nPD10,10;\nLBHello\x03\n\x7fPU;\n");
    let codes: Vec<_> = s.issues.iter().map(|f| f.code.as_str()).collect();
    assert_eq!(codes, ["unsupported_command", "label", "unexpected_byte"]);
    assert_eq!(s.issues[0].line, 2);
    assert!(s.issues[0].message.en.contains("SC"));
    assert_eq!(s.strokes, 1);
}

#[test]
fn findings_of_one_kind_stop_at_twenty_and_count_the_rest() {
    let text = "ZZ;".repeat(50);
    let s = summary(&text);
    assert_eq!(s.issues.len(), 21);
    assert!(s.issues[20].message.en.contains("30 more"));
}

#[test]
fn absurd_numbers_and_overflowing_relative_moves_stay_finite() {
    let s = summary(&format!(
        "IN;PD{0},1;PR1000000000,1000000000,1000000000,1000000000;PD1,2,3;",
        "9".repeat(400)
    ));
    assert!(s.cut_mm.is_finite() && s.estimate_s.is_finite());
    let codes: Vec<_> = s.issues.iter().map(|f| f.code.as_str()).collect();
    assert!(codes.contains(&"unparsable_number"));
    assert!(codes.contains(&"odd_coordinates"));
}

#[test]
fn hpgl_is_recognised_by_its_first_instruction() {
    assert!(looks_like_hpgl(b"IN;PU0,0;"));
    assert!(looks_like_hpgl(b"\x1b.@;0:\x1b.N;19:IN;"));
    assert!(looks_like_hpgl(b"\r\nin\r\nsp1\r\n"));
    assert!(!looks_like_hpgl(b"G28\nG1 X10\n"));
    assert!(!looks_like_hpgl(b"INCLUDE this"));
    assert!(!looks_like_hpgl(b"PD\0\0\0"));
    assert!(!looks_like_hpgl(b";PA 3 mm layers\nG28\n"));
}

#[test]
fn the_preview_draws_cuts_solid_and_travels_dashed_with_y_up() {
    let a = analyze(
        &b"IN;PU0,0;PD400,0,400,800;PU2000,2000;PD2400,2000;"[..],
        &CutterSettings::default(),
        Some(&PreviewOptions::default()),
    )
    .unwrap();
    let svg = a.preview_svg.unwrap();
    assert!(svg.starts_with("<svg"), "{svg}");
    assert!(svg.contains("class=\"cut\""));
    assert!(svg.contains("stroke-dasharray"));
    // (10, 20) mm is drawn at y = -20: the plotter's Y up.
    assert!(svg.contains("L10.00 -20.00"), "{svg}");
}

#[test]
fn the_preview_of_a_huge_file_stays_within_its_budget() {
    let mut text = String::from("IN;");
    for i in 0..200_000u32 {
        let (x, y) = (i % 4000, (i / 4000) * 10);
        text.push_str(&format!("PU{x},{y};PD{},{};", x + 3, y + 7));
    }
    let options = PreviewOptions::default();
    let a = analyze(text.as_bytes(), &CutterSettings::default(), Some(&options)).unwrap();
    assert_eq!(a.summary.strokes, 200_000);
    let svg = a.preview_svg.unwrap();
    let points = svg.matches('L').count();
    assert!(
        points <= 2 * options.max_points + options.max_travels + 10,
        "{points}"
    );
}

#[test]
fn a_summary_reads_back_from_json() {
    let s = summary("IN;VS30;FS80;SP1;PU0,0;PD100,100;PU;");
    let back: HpglSummary = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
    assert_eq!(back, s);
    assert_eq!(s.max_force, Some(80.0));
    assert_eq!(s.pens, vec![1]);
}
