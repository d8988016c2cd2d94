"""Bit-exact ports of the random streams pnnc's trainer draws from.

pnnc seeds every random choice from the run seed (`train/run.rs`): the sample order of
an epoch, the augmentation of a step, the dropout masks of a step and the initial weights.
Its generator is Rust's `rand` 0.8 `StdRng` (ChaCha with 12 rounds, seeded through PCG32
by `seed_from_u64`), read as a flat stream of 32-bit words (`next_u32` takes one word,
`next_u64` two: low, then high). This module reproduces that stream and the samplers
pnnc uses on it (`gen_range` on integers and floats, `gen_bool`, `shuffle`), so that the
PyTorch trainer sees the same batches, the same crops and flips and starts from the same
weights. The integration test `tests/torch_export.rs` compares every one with pnnc.

ChaCha runs in numpy, vectorised over blocks (and over many streams at once where a
whole epoch of per-step streams is needed).
"""

import numpy as np

MASK32 = 0xFFFF_FFFF
MASK64 = 0xFFFF_FFFF_FFFF_FFFF

# train/run.rs: the stream ids of `mix_seed`.
STREAM_SHUFFLE = 1
STREAM_AUGMENT = 2
STREAM_STEP = 3

_SIGMA = (0x6170_7865, 0x3320_646E, 0x7962_2D32, 0x6B20_6574)
_DOUBLE_ROUNDS = 6  # ChaCha12


def mix_seed(seed, stream, counter):
    """train/run.rs `mix_seed`: SplitMix64 finaliser over (seed, stream, counter)."""
    z = (seed + stream * 0xD1B5_4A32_D192_ED03 + counter * 0x9E37_79B9_7F4A_7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58_476D_1CE4_E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D0_49BB_1331_11EB) & MASK64
    return z ^ (z >> 31)


def splitmix64(z):
    """train/backend/elementwise.rs `splitmix64` (adds the golden gamma first)."""
    z = (z + 0x9E37_79B9_7F4A_7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58_476D_1CE4_E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D0_49BB_1331_11EB) & MASK64
    return z ^ (z >> 31)


def seed_key(seed):
    """rand_core `seed_from_u64`: eight PCG32 outputs form the 256-bit ChaCha key."""
    state = seed & MASK64
    key = []
    for _ in range(8):
        state = (state * 6364136223846793005 + 11634580027462260723) & MASK64
        xorshifted = (((state >> 18) ^ state) >> 27) & MASK32
        rot = state >> 59
        key.append(((xorshifted >> rot) | (xorshifted << ((32 - rot) & 31))) & MASK32)
    return key


def _rotl(v, n):
    return (v << np.uint32(n)) | (v >> np.uint32(32 - n))


def _quarter(s, a, b, c, d):
    s[a] += s[b]
    s[d] = _rotl(s[d] ^ s[a], 16)
    s[c] += s[d]
    s[b] = _rotl(s[b] ^ s[c], 12)
    s[a] += s[b]
    s[d] = _rotl(s[d] ^ s[a], 8)
    s[c] += s[d]
    s[b] = _rotl(s[b] ^ s[c], 7)


def chacha_words(keys, first_block, blocks):
    """Words `16 * first_block ..` of `blocks` blocks of each stream.

    keys: [S, 8] uint32 (one key per stream); returns [S, 16 * blocks] uint32.
    Block counter in words 12-13, nonce (words 14-15) zero, as rand_chacha.
    """
    keys = np.asarray(keys, dtype=np.uint32).reshape(-1, 8)
    streams = keys.shape[0]
    counters = np.arange(first_block, first_block + blocks, dtype=np.uint64)
    init = np.empty((16, streams, blocks), dtype=np.uint32)
    for i, c in enumerate(_SIGMA):
        init[i] = c
    for i in range(8):
        init[4 + i] = keys[:, i][:, None]
    init[12] = (counters & np.uint64(MASK32)).astype(np.uint32)[None, :]
    init[13] = (counters >> np.uint64(32)).astype(np.uint32)[None, :]
    init[14] = 0
    init[15] = 0
    init = init.reshape(16, -1)
    s = [init[i].copy() for i in range(16)]
    with np.errstate(over="ignore"):
        for _ in range(_DOUBLE_ROUNDS):
            _quarter(s, 0, 4, 8, 12)
            _quarter(s, 1, 5, 9, 13)
            _quarter(s, 2, 6, 10, 14)
            _quarter(s, 3, 7, 11, 15)
            _quarter(s, 0, 5, 10, 15)
            _quarter(s, 1, 6, 11, 12)
            _quarter(s, 2, 7, 8, 13)
            _quarter(s, 3, 4, 9, 14)
        out = np.stack([s[i] + init[i] for i in range(16)])  # [16, S * blocks]
    return out.reshape(16, streams, blocks).transpose(1, 2, 0).reshape(streams, blocks * 16)


def u64_pairs(words):
    """Consecutive (low, high) word pairs as uint64: what `next_u64` returns."""
    w = words.astype(np.uint64)
    return w[..., 0::2] | (w[..., 1::2] << np.uint64(32))


class StdRng:
    """`rand::rngs::StdRng::seed_from_u64(seed)` as a word stream.

    Words are generated `chunk_blocks` blocks at a time; the stream does not depend on
    the chunking (rand's BlockRng reads words in order across its buffers, `next_u64`
    included).
    """

    def __init__(self, seed, chunk_blocks=16):
        self.key = np.array(seed_key(seed), dtype=np.uint32)
        self.chunk = max(1, chunk_blocks)
        self.next_block = 0
        self.buf = np.zeros(0, dtype=np.uint64)
        self.pos = 0

    def _refill(self, at_least):
        blocks = max(self.chunk, (at_least + 15) // 16)
        fresh = chacha_words(self.key, self.next_block, blocks)[0].astype(np.uint64)
        self.next_block += blocks
        self.buf = np.concatenate([self.buf[self.pos :], fresh])
        self.pos = 0

    def take(self, count):
        """The next `count` words as uint64, advancing the stream."""
        if len(self.buf) - self.pos < count:
            self._refill(count - (len(self.buf) - self.pos))
        out = self.buf[self.pos : self.pos + count]
        self.pos += count
        return out

    def give_back(self, count):
        """Un-read the last `count` words (a vectorised draw read ahead)."""
        self.pos -= count

    def next_u32(self):
        return int(self.take(1)[0])

    def next_u64(self):
        lo, hi = self.take(2)
        return int(lo) | (int(hi) << 32)

    def below_u32(self, n):
        """`gen_range(0..n)` on u32 (rand's widening multiply with a rejection zone)."""
        zone = _zone(n, 32)
        while True:
            m = self.next_u32() * n
            if (m & MASK32) <= zone:
                return m >> 32

    def range_inclusive_u64(self, low, high):
        """`gen_range(low..=high)` on usize / isize (u64 arithmetic on 64-bit targets)."""
        span = (high - low + 1) & MASK64
        if span == 0:
            return low + self.next_u64()
        zone = _zone(span, 64)
        while True:
            m = self.next_u64() * span
            if (m & MASK64) <= zone:
                return low + (m >> 64)

    def gen_bool(self, p):
        """`gen_bool(p)` (rand's Bernoulli: one u64 compared with p * 2^64)."""
        if p == 1.0:
            return True
        return self.next_u64() < int(p * 18446744073709551616.0)


def _zone(span, bits):
    """rand's `(range << range.leading_zeros()).wrapping_sub(1)` in `bits`-bit arithmetic."""
    lz = bits - span.bit_length()
    return ((span << lz) - 1) & ((1 << bits) - 1)


def _zones32(spans):
    """`_zone(s, 32)` for a uint64 array of spans 1 <= s < 2^32."""
    _, bits = np.frexp(spans.astype(np.float64))  # exact bit length of s < 2^53
    return (spans << (32 - bits).astype(np.uint64)) - np.uint64(1)


def shuffle_permutation(n, rng):
    """`slice.shuffle(&mut rng)` on `0..n` (rand 0.8: Fisher-Yates from the top)."""
    order = list(range(n))
    if n < 2:
        return order
    spans = np.arange(n, 1, -1, dtype=np.uint64)  # i + 1 for i = n-1 .. 1
    zones = _zones32(spans)
    picks = np.empty(n - 1, dtype=np.int64)
    done = 0
    # One word per swap unless rejected (rare): draw vectorised, redo after a rejection.
    while done < n - 1:
        need = n - 1 - done
        m = rng.take(need) * spans[done:]
        bad = np.flatnonzero((m & np.uint64(MASK32)) > zones[done:])
        take = need if bad.size == 0 else int(bad[0])
        picks[done : done + take] = (m[:take] >> np.uint64(32)).astype(np.int64)
        done += take
        if bad.size:
            rng.give_back(need - take - 1)  # the rejected word stays consumed
    for i, j in zip(range(n - 1, 0, -1), picks.tolist()):
        order[i], order[j] = order[j], order[i]
    return order


def epoch_order(n, seed, epoch):
    """train/run.rs `epoch_order`: the sample order of one epoch."""
    return shuffle_permutation(n, StdRng(mix_seed(seed, STREAM_SHUFFLE, epoch), chunk_blocks=64))


def uniform_f64_inclusive(rng_words_u64, low, high):
    """`gen_range(low..=high)` on f64 for a vector of u64 draws (no rejection on floats).

    rand 0.8 `UniformFloat::new_inclusive` then `sample`: scale shrunk until
    `scale * max_rand + low <= high`, value = ((u >> 12) as [1, 2) - 1) * scale + low.
    """
    max_rand = 1.0 - 2.0**-52
    scale = (high - low) / max_rand
    while scale * max_rand + low > high:
        scale = np.nextafter(scale, -np.inf)
    mantissa = (rng_words_u64 >> np.uint64(12)) | np.uint64(0x3FF0_0000_0000_0000)
    value0_1 = mantissa.view(np.float64) - 1.0
    return value0_1 * scale + low


class InitStream:
    """pnnc's weight initialiser: consecutive `gen_range(-b..=b)` f64 draws, one u64 each."""

    def __init__(self, seed):
        self.key = np.array(seed_key(seed), dtype=np.uint32)
        self.u64_pos = 0  # draws consumed so far

    def uniform(self, count, fan_in):
        """`count` values of U(-1/sqrt(fan_in), 1/sqrt(fan_in)) as float32."""
        bound = 1.0 / np.sqrt(float(max(fan_in, 1)))
        first_word = 2 * self.u64_pos
        last_word = 2 * (self.u64_pos + count)
        b0, b1 = first_word // 16, (last_word + 15) // 16
        out = np.empty(count, dtype=np.float64)
        done = 0
        step = 1 << 16  # blocks per numpy call: bounded memory
        for start in range(b0, b1, step):
            blocks = min(step, b1 - start)
            words = chacha_words(self.key, start, blocks)[0]
            lo_w = max(first_word, 16 * start) - 16 * start
            hi_w = min(last_word, 16 * (start + blocks)) - 16 * start
            draws = u64_pairs(words[lo_w:hi_w])
            out[done : done + draws.size] = uniform_f64_inclusive(draws, -bound, bound)
            done += draws.size
        self.u64_pos += count
        return out.astype(np.float32)

