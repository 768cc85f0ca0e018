use super::*;

fn monitor(x: i16, y: i16, width: u16, height: u16) -> Monitor {
    Monitor {
        index: 0,
        name: "m".into(),
        primary: false,
        x,
        y,
        width,
        height,
    }
}

#[test]
fn damage_outside_the_monitor_is_ignored() {
    let m = monitor(1920, 0, 1280, 1024);
    let r = |x, y, width, height| xproto::Rectangle {
        x,
        y,
        width,
        height,
    };
    assert!(!intersects(&r(0, 0, 1920, 1080), &m));
    assert!(intersects(&r(1900, 10, 21, 5), &m));
    assert!(intersects(&r(3000, 1000, 500, 500), &m));
    assert!(!intersects(&r(3200, 0, 10, 10), &m));
    assert!(!intersects(&r(2000, 1024, 10, 10), &m));
}

#[test]
fn odd_monitors_are_cropped_to_even_sizes() {
    assert_eq!(even_size(&monitor(0, 0, 1366, 767)).unwrap(), (1366, 766));
    assert!(even_size(&monitor(0, 0, 1, 600)).is_err());
}

#[test]
fn picking_a_monitor() {
    let mut a = monitor(0, 0, 100, 100);
    let mut b = monitor(100, 0, 100, 100);
    b.index = 1;
    b.primary = true;
    a.index = 0;
    let all = [a.clone(), b.clone()];
    assert_eq!(pick(&all, None).unwrap(), b);
    assert_eq!(pick(&all, Some(0)).unwrap(), a);
    assert!(matches!(
        pick(&all, Some(2)),
        Err(CaptureError::NoSuchMonitor { index: 2, count: 2 })
    ));
}
