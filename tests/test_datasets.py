"""Dataset loaders on small files written here in the real formats (CIFAR-10 pickles, AEDAT 3.1, AEDAT 2.0)."""
import os
import pickle
import struct

import numpy as np
import pytest
import torch

from spikecore.models import datasets as ds
from spikecore.models.datasets import (CIFAR10, CIFAR10DVS, DVSGesture, DatasetFormatError, DatasetNotFoundError,
                             events_to_frames, load_cifar10, normalize_cifar10, random_crop_flip,
                             read_cifar10dvs_events, read_gesture_events, read_gesture_labels)


# ------------------------------------------------------------------------------------------------ CIFAR-10 writers

def _batch(n, seed, labels=None):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = list(rng.integers(0, 10, size=n)) if labels is None else labels
    return {b"batch_label": b"batch", b"labels": [int(v) for v in labels], b"data": data,
            b"filenames": [b"img%d.png" % i for i in range(n)]}


def _write_cifar(folder, n=3):
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        batches[name] = _batch(n, i)
        with open(folder / name, "wb") as fh:
            pickle.dump(batches[name], fh, protocol=4)
    meta = {b"num_cases_per_batch": n, b"label_names": [c.encode() for c in ds.CIFAR10_CLASSES],
            b"num_vis": 3072}
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump(meta, fh, protocol=4)
    return batches


def _py2_pickle(data: np.ndarray, labels):
    """A dict pickled the way Python 2 + numpy 1.x wrote the official CIFAR-10 batches (protocol 2, str keys,
    global ``numpy.core.multiarray._reconstruct``), written opcode by opcode."""
    def s(b):  # SHORT_BINSTRING / BINSTRING (a Python 2 str)
        return (b"U" + bytes([len(b)]) + b) if len(b) < 256 else (b"T" + struct.pack("<i", len(b)) + b)

    def int_(v):
        return b"K" + bytes([v]) if v < 256 else b"M" + struct.pack("<H", v)

    dtype = b"cnumpy\ndtype\n" + s(b"u1") + b"\x89\x88\x87R" + b"(K\x03" + s(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    shape = b"(" + b"".join(int_(d) for d in data.shape) + b"t"
    array = (b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + b"K\x00\x85" + s(b"b") + b"\x87R"
             + b"(K\x01" + shape + dtype + b"\x89" + s(data.tobytes()) + b"tb")
    lst = b"](" + b"".join(int_(v) for v in labels) + b"e"
    return b"\x80\x02}(" + s(b"data") + array + s(b"labels") + lst + b"u."


def test_cifar10_reads_batches_in_official_layout(tmp_path):
    batches = _write_cifar(tmp_path / "cifar-10-batches-py")
    x, y = load_cifar10(tmp_path, train=True)           # the parent of cifar-10-batches-py also works
    assert x.dtype == torch.uint8 and tuple(x.shape) == (15, 3, 32, 32) and y.dtype == torch.int64
    first = batches["data_batch_1"][b"data"][1]
    assert torch.equal(x[1, 0], torch.from_numpy(first[:1024].reshape(32, 32)))        # R plane first
    assert torch.equal(x[1, 2], torch.from_numpy(first[2048:].reshape(32, 32)))        # then G, B
    assert y[3:6].tolist() == batches["data_batch_2"][b"labels"]                        # batch order 1..5
    xt, yt = load_cifar10(tmp_path / "cifar-10-batches-py", train=False)
    assert tuple(xt.shape) == (3, 3, 32, 32) and yt.tolist() == batches["test_batch"][b"labels"]


def test_cifar10_reads_python2_pickles(tmp_path):
    data = np.random.default_rng(5).integers(0, 256, size=(2, 3072), dtype=np.uint8)
    raw = _py2_pickle(data, [7, 3])
    path = tmp_path / "test_batch"
    path.write_bytes(raw)
    obj = ds.restricted_pickle_load(path)
    assert set(obj) == {b"data", b"labels"} and obj[b"labels"] == [7, 3]
    assert obj[b"data"].dtype == np.uint8 and np.array_equal(obj[b"data"], data)
    x, y = load_cifar10(tmp_path, train=False)
    assert y.tolist() == [7, 3] and torch.equal(x[0].reshape(-1), torch.from_numpy(data[0]))


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.remove, (self.target,))


def test_cifar10_unpickler_refuses_other_globals(tmp_path):
    sentinel = tmp_path / "sentinel"
    sentinel.write_text("x")
    bad = tmp_path / "data_batch_1"
    with open(bad, "wb") as fh:
        pickle.dump({b"data": _Evil(str(sentinel)), b"labels": []}, fh, protocol=2)
    with pytest.raises(DatasetFormatError, match=r"data_batch_1.*'posix\.remove'|data_batch_1.*remove"):
        ds.restricted_pickle_load(bad)
    assert sentinel.exists()
    p5 = tmp_path / "p5"                                 # numpy's protocol-5 path uses another global: refused
    with open(p5, "wb") as fh:
        pickle.dump({b"data": np.zeros((1, 3072), np.uint8), b"labels": [0]}, fh, protocol=5)
    with pytest.raises(DatasetFormatError, match="_frombuffer"):
        ds.restricted_pickle_load(p5)
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"not a pickle at all")
    with pytest.raises(DatasetFormatError, match="garbage"):
        ds.restricted_pickle_load(garbage)


def test_cifar10_missing_and_malformed_files_say_what_to_do(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        load_cifar10(tmp_path / "nowhere")
    msg = str(err.value)
    assert "nowhere" in msg and "data_batch_1" in msg and "test_batch" in msg and "\n" not in msg
    assert isinstance(err.value, FileNotFoundError)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match=r"missing data_batch_1, data_batch_2, .*data_batch_5 in"):
        load_cifar10(tmp_path / "empty")
    _write_cifar(tmp_path / "c")
    (tmp_path / "c" / "test_batch").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"missing test_batch in"):
        load_cifar10(tmp_path / "c", train=False)
    with open(tmp_path / "c" / "test_batch", "wb") as fh:
        pickle.dump({b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]}, fh, protocol=4)
    with pytest.raises(DatasetFormatError, match=r"test_batch: b'data' must be a uint8 array \[N, 3072\], got "
                                                 r"uint8 \[2, 1024\]"):
        load_cifar10(tmp_path / "c", train=False)
    with open(tmp_path / "c" / "test_batch", "wb") as fh:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, fh, protocol=4)
    with pytest.raises(DatasetFormatError, match="b'labels' must be 2 integers"):
        load_cifar10(tmp_path / "c", train=False)


def test_random_crop_flip_is_a_window_of_the_padded_image():
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(1, 256, (64, 3, 32, 32), dtype=torch.uint8)
    out = random_crop_flip(imgs, padding=4, generator=g)
    assert out.dtype == torch.uint8 and out.shape == imgs.shape
    padded = torch.nn.functional.pad(imgs, (4, 4, 4, 4))
    seen = set()
    for n in range(imgs.shape[0]):
        hits = [(oy, ox, f) for oy in range(9) for ox in range(9) for f in (0, 1)
                if torch.equal(out[n], (lambda w: w.flip(-1) if f else w)(padded[n, :, oy:oy + 32, ox:ox + 32]))]
        assert len(hits) == 1
        seen.add(hits[0])
    assert len({h[2] for h in seen}) == 2 and len({h[:2] for h in seen}) > 20     # both flips, many offsets
    again = random_crop_flip(imgs, padding=4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    single = random_crop_flip(imgs[0], padding=0, generator=g)
    assert torch.equal(single, imgs[0]) or torch.equal(single, imgs[0].flip(-1))


def test_normalize_and_dataset_items(tmp_path):
    px = torch.tensor([[[round(m * 255)]] for m in ds.CIFAR10_MEAN], dtype=torch.uint8)
    assert normalize_cifar10(px).abs().max() < 0.01
    white = normalize_cifar10(torch.full((3, 1, 1), 255, dtype=torch.uint8)).flatten()
    expect = torch.tensor([(1 - m) / s for m, s in zip(ds.CIFAR10_MEAN, ds.CIFAR10_STD)])
    assert torch.allclose(white, expect)
    _write_cifar(tmp_path)
    test_set = CIFAR10(tmp_path, train=False)
    x, y = test_set[1]
    assert x.dtype == torch.float32 and tuple(x.shape) == (3, 32, 32) and isinstance(y, int)
    assert torch.allclose(x, normalize_cifar10(test_set.images[1]))                  # no augmentation at test
    assert test_set.classes[0] == "airplane" and len(test_set) == 3
    train_set = CIFAR10(tmp_path, train=True, generator=torch.Generator().manual_seed(1))
    xs = torch.stack([train_set[0][0] for _ in range(8)])
    assert len(train_set) == 15 and not all(torch.equal(xs[0], v) for v in xs[1:])  # augmented per draw


# ------------------------------------------------------------------------------------------------ AEDAT writers

def _aedat31_packet(events, etype=1, overflow=0):
    """One AEDAT 3.1 packet: 28-byte header + (data, timestamp) uint32 pairs, little-endian."""
    n = len(events)
    head = struct.pack("<HHIIIIII", etype, 1, 8, 4, overflow, n, n, n)
    body = b"".join(struct.pack("<II", d, t) for d, t in events)
    return head + body


def _polarity_word(x, y, p):
    return (x << 17) | (y << 2) | (p << 1) | 1


def _write_aedat31(path, packets):
    header = (b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n#Start-Time: 2017-01-01 00:00:00 (TZ+0000)\r\n"
              b"#!END-HEADER\r\n")
    path.write_bytes(header + b"".join(packets))


def _write_labels(path, rows):
    path.write_text("class,startTime_usec,endTime_usec\n" + "".join(f"{c},{a},{b}\n" for c, a, b in rows))


def _gesture_events():
    # (t, x, y, p): gesture 1 (class 3) in [1000, 20000), gesture 2 (class 11) in [30000, 50000)
    return [(500, 5, 5, 1),                                   # before any gesture: dropped
            (1000, 0, 0, 1), (1200, 3, 3, 1), (1900, 127, 64, 0), (2000, 4, 0, 0), (4999, 8, 127, 1),
            (5000, 9, 9, 1),                                  # beyond T*dt = 4 ms after the first event: dropped
            (30000, 64, 32, 1), (30500, 65, 33, 1), (31000, 10, 20, 0)]


def _write_gesture(root, user, light, events, rows, special=True):
    packets = []
    evs = [(_polarity_word(x, y, p), t) for t, x, y, p in events]
    packets.append(_aedat31_packet(evs[:4]))
    if special:                                               # a special-event packet (type 0) must be skipped
        packets.append(_aedat31_packet([(0x12345678, 2500)], etype=0))
    packets.append(_aedat31_packet(evs[4:]))
    _write_aedat31(root / f"user{user:02d}_{light}.aedat", packets)
    _write_labels(root / f"user{user:02d}_{light}_labels.csv", rows)


def test_gesture_reader_decodes_aedat31_and_skips_other_packets(tmp_path):
    events = _gesture_events()
    _write_gesture(tmp_path, 1, "fluorescent", events, [(3, 1000, 20000)])
    t, x, y, p = read_gesture_events(tmp_path / "user01_fluorescent.aedat")
    assert t.tolist() == [e[0] for e in events] and x.tolist() == [e[1] for e in events]
    assert y.tolist() == [e[2] for e in events] and p.tolist() == [e[3] for e in events]
    assert read_gesture_labels(tmp_path / "user01_fluorescent_labels.csv").tolist() == [[2, 1000, 20000]]
    # on a file with polarity packets only, the raw words equal what tonic's own AEDAT 3.x reader returns
    _write_gesture(tmp_path, 2, "led", events, [(1, 0, 10)], special=False)
    import tonic.io
    path = str(tmp_path / "user02_led.aedat")
    version, start, _ = tonic.io.read_aedat_header_from_file(path)
    ref = tonic.io.get_aer_events_from_file(path, version, start)
    data, ts = ds.read_aedat31_polarity(path)
    assert version == pytest.approx(3.1) and np.array_equal(ref["address"], data)
    assert np.array_equal(ref["timeStamp"], ts)
    overflow = tmp_path / "ovf.aedat"                          # eventTSOverflow extends timestamps past 2^31
    _write_aedat31(overflow, [_aedat31_packet([(_polarity_word(1, 2, 1), 7)], overflow=2)])
    assert ds.read_aedat31_polarity(overflow)[1].tolist() == [7 + (2 << 31)]


def _reference_frames(events, t0, T, dt, size, ds_, row_of, col_of):
    ref = np.zeros((T, 2, size, size), np.float32)
    for ev in events:
        t, p = ev[0], ev[3]
        if t0 <= t < t0 + T * dt:
            ref[(t - t0) // dt, p, int(row_of(ev) // ds_), int(col_of(ev) // ds_)] += 1
    return ref


def test_dvs_gesture_dataset_frames_labels_split_and_cache(tmp_path):
    root = tmp_path / "DvsGesture"
    root.mkdir()
    events = _gesture_events()
    _write_gesture(root, 1, "fluorescent", events, [(3, 1000, 20000), (11, 30000, 50000)])
    _write_gesture(root, 24, "led", events, [(5, 30000, 31000)])
    train = DVSGesture(tmp_path, train=True, timesteps=4, dt_ms=1, size=32, cache_dir=tmp_path / "cache")
    assert len(train) == 2 and train.labels.tolist() == [2, 10]
    x, y = train[0]
    assert x.dtype == torch.float32 and tuple(x.shape) == (4, 2, 32, 32) and y == 2
    g1 = [e for e in events if 1000 <= e[0] < 20000]
    ref = _reference_frames(g1, 1000, 4, 1000, 32, 4, row_of=lambda e: e[2], col_of=lambda e: e[1])
    assert np.array_equal(x.numpy(), ref) and x.sum() == 5      # 6 events in the gesture, 1 past T*dt
    assert x[0, 1, 0, 0] == 2 and x[0, 0, 16, 31] == 1 and x[1, 0, 0, 1] == 1 and x[3, 1, 31, 2] == 1
    g2 = [e for e in events if 30000 <= e[0] < 50000]
    ref2 = _reference_frames(g2, 30000, 4, 1000, 32, 4, row_of=lambda e: e[2], col_of=lambda e: e[1])
    assert np.array_equal(train[1][0].numpy(), ref2)
    test = DVSGesture(root, train=False, timesteps=4, dt_ms=1, size=32)
    assert len(test) == 1 and test[0][1] == 4 and test[0][0].sum() == 2    # only users 24..29; [30000, 31000) holds 2
    cached = list((tmp_path / "cache").glob("*.npz"))
    assert len(cached) == 1
    again = DVSGesture(tmp_path, train=True, timesteps=4, dt_ms=1, size=32, cache_dir=tmp_path / "cache")
    assert torch.equal(again[1][0], train[1][0]) and again.labels.tolist() == [2, 10]
    default = DVSGesture(tmp_path, train=True)                  # the paper's T = 40, 30 ms, 32x32
    assert tuple(default[0][0].shape) == (40, 2, 32, 32) and default[0][0].sum() == 6


def test_dvs_gesture_cache_is_validated_when_read(tmp_path, monkeypatch):
    """A corrupt, truncated or foreign cache file is rebuilt; an edited recording is binned again; a valid
    cache is used without binning."""
    root = tmp_path / "DvsGesture"
    root.mkdir()
    _write_gesture(root, 1, "fluorescent", _gesture_events(), [(3, 1000, 20000)])
    options = dict(train=True, timesteps=4, dt_ms=1, size=32, cache_dir=tmp_path / "cache")
    first = DVSGesture(tmp_path, **options)
    (cache,) = (tmp_path / "cache").glob("*.npz")
    for damage in (b"garbage", cache.read_bytes()[:100]):
        cache.write_bytes(damage)
        assert torch.equal(DVSGesture(tmp_path, **options)[0][0], first[0][0])
    np.savez(cache, frames=np.zeros((1, 9)), labels=np.array([99]), sources=np.array(["x"]))
    assert torch.equal(DVSGesture(tmp_path, **options)[0][0], first[0][0])

    def no_binning(self):
        raise AssertionError("a valid cache was binned again")

    with monkeypatch.context() as patch:
        patch.setattr(DVSGesture, "_build", no_binning)
        assert torch.equal(DVSGesture(tmp_path, **options)[0][0], first[0][0])
    _write_gesture(root, 1, "fluorescent", _gesture_events()[:3], [(3, 1000, 20000)])  # an edited recording
    edited = DVSGesture(tmp_path, **options)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2 and edited[0][0].sum() < first[0][0].sum()


def test_dvs_gesture_missing_and_malformed_files(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        DVSGesture(tmp_path / "absent")
    assert "user01_fluorescent.aedat" in str(err.value) and "labels.csv" in str(err.value)
    assert "absent" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(DatasetNotFoundError, match=r"no training \(users 01..23\) recordings"):
        DVSGesture(tmp_path)
    _write_gesture(tmp_path, 2, "lab", _gesture_events(), [(1, 1000, 2000)])
    (tmp_path / "user02_lab_labels.csv").unlink()
    with pytest.raises(DatasetNotFoundError, match="missing user02_lab_labels.csv"):
        DVSGesture(tmp_path)
    _write_labels(tmp_path / "user02_lab_labels.csv", [(12, 1000, 2000)])
    with pytest.raises(DatasetFormatError, match=r"user02_lab_labels.csv: line 2: class must be 1..11"):
        DVSGesture(tmp_path)
    _write_labels(tmp_path / "user02_lab_labels.csv", [(1, 10000, 20000)])
    with pytest.raises(DatasetFormatError, match=r"user02_lab.aedat: gesture row 1 .* holds no events"):
        DVSGesture(tmp_path)
    (tmp_path / "user02_lab.aedat").write_bytes(b"\x00\x01garbage")
    with pytest.raises(DatasetFormatError, match=r"user02_lab.aedat: not an AEDAT file"):
        DVSGesture(tmp_path)
    _write_aedat31(tmp_path / "user02_lab.aedat", [_aedat31_packet([(1, 2)])[:-3]])
    with pytest.raises(DatasetFormatError, match=r"user02_lab.aedat: bad or truncated packet"):
        DVSGesture(tmp_path)
    (tmp_path / "user02_lab.aedat").write_bytes(b"#!AER-DAT2.0\r\n" + b"\x00" * 8)
    with pytest.raises(DatasetFormatError, match=r"user02_lab.aedat: expected AEDAT 3.1, found AEDAT 2.0"):
        DVSGesture(tmp_path)


# ------------------------------------------------------------------------------------------------ CIFAR10-DVS

def _write_aedat2(path, events):
    """jAER AEDAT 2.0: '#' header lines, then big-endian uint32 (address, timestamp) pairs."""
    header = (b"#!AER-DAT2.0\r\n# This is a raw AE data file - do not edit\r\n"
              b"# Data format is int32 address, int32 timestamp (8 bytes total), repeated for each event\r\n"
              b"# Timestamps tick is 1 us\r\n# created Thu Dec 03 15:38:09 CET 2015\r\n")
    body = b"".join(struct.pack(">II", (yb << 8) | (xb << 1) | p, t) for t, xb, yb, p in events)
    path.write_bytes(header + body)


def _dvs_events(seed, n=300, t0=0):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(t0, t0 + 120_000, size=n))
    return [(int(a), int(b), int(c), int(d)) for a, b, c, d in
            zip(t, rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n))]


def _write_cifar10dvs(root, per_class=3):
    files = {}
    for label, c in enumerate(ds.CIFAR10DVS_CLASSES):
        (root / c).mkdir(parents=True)
        for k in [0, 2, 10][:per_class]:
            evs = _dvs_events(100 * label + k, t0=1000 * k)
            _write_aedat2(root / c / f"cifar10_{c}_{k}.aedat", evs)
            files[(c, k)] = evs
    return files


def test_cifar10dvs_reader_and_frames_match_the_authors_binning(tmp_path):
    files = _write_cifar10dvs(tmp_path)
    events = files[("bird", 10)]
    t, row, col, p = read_cifar10dvs_events(tmp_path / "bird" / "cifar10_bird_10.aedat")
    assert t.tolist() == [e[0] for e in events] and p.tolist() == [e[3] for e in events]
    assert row.tolist() == [127 - e[1] for e in events] and col.tolist() == [e[2] for e in events]
    train = CIFAR10DVS(tmp_path, train=True, train_per_class=2)
    test = CIFAR10DVS(tmp_path, train=False, train_per_class=2)
    assert len(train) == 20 and len(test) == 10
    assert [f.name for f in test.files[:2]] == ["cifar10_airplane_10.aedat", "cifar10_automobile_10.aedat"]
    x, y = test[2]
    assert y == 2 and x.dtype == torch.float32 and tuple(x.shape) == (10, 2, 42, 42)
    ref = _reference_frames(events, events[0][0], 10, 10_000, 42, 3.04,
                            row_of=lambda e: np.float64(127 - e[1]), col_of=lambda e: np.float64(e[2]))
    assert np.array_equal(x.numpy(), ref)
    assert x.sum() == sum(1 for e in events if e[0] < events[0][0] + 100_000) and x.sum() < len(events)
    corner = events_to_frames([0], [127], [127], [1], timesteps=1, dt_us=10, size=42, downsample=3.04)
    assert corner[0, 1, 41, 41] == 1                            # 128 pixels / 3.04 -> indices 0..41
    with pytest.raises(ValueError, match="outside a 32x32 frame"):
        events_to_frames([0], [128], [0], [0], timesteps=1, dt_us=10, size=32, downsample=4)


def test_cifar10dvs_missing_and_malformed_files(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        CIFAR10DVS(tmp_path / "absent")
    assert "airplane/cifar10_airplane_0.aedat" in str(err.value) and "\n" not in str(err.value)
    (tmp_path / "airplane").mkdir()
    with pytest.raises(DatasetNotFoundError, match=r"missing class folder\(s\) automobile, bird, .*truck in"):
        CIFAR10DVS(tmp_path)
    root = tmp_path / "ok"
    _write_cifar10dvs(root, per_class=2)
    with pytest.raises(DatasetNotFoundError, match=r"airplane' holds 2 .aedat recordings, need more than "
                                                    r"train_per_class=900"):
        CIFAR10DVS(root)
    bad = root / "cat" / "cifar10_cat_2.aedat"
    bad.write_bytes(bad.read_bytes()[:-3])
    data = CIFAR10DVS(root, train=False, train_per_class=1)
    with pytest.raises(DatasetFormatError, match="cifar10_cat_2.aedat: truncated AEDAT 2.0 data"):
        data[3]
    _write_aedat31(bad, [_aedat31_packet([(1, 2)])])
    with pytest.raises(DatasetFormatError, match="cifar10_cat_2.aedat: expected AEDAT 2.0, found AEDAT 3.1"):
        data[3]
