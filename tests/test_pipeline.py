import numpy as np
import tensorflow as tf

from tfganaug.data.augment import classic_augment
from tfganaug.data.pipeline import mix_real_synthetic, training_batches


def _arrays(n, value_offset=0.0, label_offset=0):
    x = (np.arange(n, dtype=np.float32)[:, None, None, None] / n + value_offset) * np.ones((1, 8, 8, 1), np.float32)
    return x, np.arange(n, dtype=np.int32) % 3 + label_offset


def _collect(ds):
    return [(x.numpy(), y.numpy()) for x, y in ds]


def test_stream_restarted_at_an_epoch_equals_the_uninterrupted_stream():
    x, y = _arrays(20)
    sx, sy = _arrays(9, 0.0, 10)
    kw = dict(batch_size=4, steps_per_epoch=3, epochs=5, seed=7, augment="classic", synthetic=(sx, sy),
              synthetic_ratio=0.4)
    full = _collect(training_batches(x, y, **kw))
    tail = _collect(training_batches(x, y, start_epoch=3, **kw))
    assert len(full) == 15 and len(tail) == 6
    for (a, b), (c, d) in zip(full[9:], tail):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)


def test_mix_ratio_and_labels_travel_with_images():
    x, y = _arrays(50)
    sx, sy = _arrays(50, 0.0, 10)
    batches = _collect(training_batches(x, y, batch_size=50, steps_per_epoch=20, epochs=1, seed=1,
                                        synthetic=(sx, sy), synthetic_ratio=0.3))
    labels = np.concatenate([b[1] for b in batches])
    images = np.concatenate([b[0] for b in batches])
    share = (labels >= 10).mean()
    assert abs(share - 0.3) < 0.05, share
    # The image at position i is the one whose label came with it (value encodes the index).
    index = np.round(images[:, 0, 0, 0] * 50).astype(int)
    np.testing.assert_array_equal(np.where(labels >= 10, sy[index], y[index]), labels)


def test_every_real_roi_is_seen_once_per_pass():
    is_fake, index = mix_real_synthetic(10, 0, 30, 0.0, tf.constant([3, 4], tf.int64))
    assert not is_fake.numpy().any()
    for k in range(3):
        assert sorted(index.numpy()[10 * k:10 * (k + 1)].tolist()) == list(range(10))


def test_classic_augment_is_a_pure_function_of_its_seed():
    image = tf.constant(np.random.default_rng(0).random((16, 16, 1)), tf.float32)
    a = classic_augment(image, tf.constant([1, 2], tf.int64))
    b = classic_augment(image, tf.constant([1, 2], tf.int64))
    c = classic_augment(image, tf.constant([1, 3], tf.int64))
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(a.numpy(), c.numpy())
    assert a.shape == image.shape and 0.0 <= float(tf.reduce_min(a)) and float(tf.reduce_max(a)) <= 1.0


def test_classic_augment_rotation_preserves_a_centred_disc():
    yy, xx = np.mgrid[0:33, 0:33]
    disc = ((yy - 16) ** 2 + (xx - 16) ** 2 <= 36).astype(np.float32)[..., None]
    out = classic_augment(tf.constant(disc), tf.constant([5, 5], tf.int64), max_shift_px64=0.0,
                          scale_range=(1.0, 1.0)).numpy()
    # Rotations and flips of a centred disc leave it (nearly) unchanged.
    assert np.abs(out - disc).mean() < 0.02
