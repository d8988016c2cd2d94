"""Does the FSDD audio CNN recipe train in PyTorch (ReLU network), on pnnc's features?

Recomputes pnnc's log-mel features (40 HTK mel bands, Hann window 256, hop 128, 1.04 s at
8 kHz, ln(energy + floor)), normalises with the training split's mean and std, and trains the
ReLU version of std-models/audio_cnn.pnn (AdamW, cosine to 1e-5, batch 64, one time mask of up
to 8 frames, gradient clipping 1.0), printing test accuracy per epoch. Used for docs/results.md
(FSDD). Usage:

    python fsdd_torch_probe.py FLOOR EPOCHS LR avg|max     # e.g. 1e-6 10 3e-3 avg

Reads $PNN_DATA/fsdd/fsdd.tar.gz (default ../shared/data). The training set here is all 2,700
non-test recordings (pnnc holds 270 out for validation).
"""
import io, math, os, re, sys, tarfile, time, wave
import numpy as np, torch, torch.nn as nn
torch.set_num_threads(1)
floor = float(sys.argv[1]); epochs = int(sys.argv[2]); lr = float(sys.argv[3]); pool = sys.argv[4]
archive = os.path.join(os.environ.get('PNN_DATA', '../shared/data'), 'fsdd', 'fsdd.tar.gz')
sr, nfft, hop, nmel, n = 8000, 256, 128, 40, 8320
def hz2mel(f): return 2595*np.log10(1+f/700)
def mel2hz(m): return 700*(10**(m/2595)-1)
top = hz2mel(sr/2); edges = mel2hz(top*np.arange(nmel+2)/(nmel+1)); f = np.arange(nfft//2+1)*sr/nfft
fb = np.zeros((nmel, nfft//2+1))
for m in range(nmel):
    lo, mid, hi = edges[m:m+3]
    fb[m] = np.where((f > lo) & (f <= mid), (f-lo)/(mid-lo), np.where((f > mid) & (f < hi), (hi-f)/(hi-mid), 0))
win = 0.5-0.5*np.cos(2*np.pi*np.arange(nfft)/nfft)
X, Y, T = [], [], []
with tarfile.open(archive) as t:
    for mem in t.getmembers():
        if not mem.name.endswith('.wav'): continue
        d, s, i = re.match(r'(\d+)_(\w+)_(\d+)\.wav', mem.name.split('/')[-1]).groups()
        w = wave.open(io.BytesIO(t.extractfile(mem).read()))
        a = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32)/32768
        a = np.pad(a[:n], (0, max(0, n-len(a))))
        fr = np.stack([a[k*hop:k*hop+nfft]*win for k in range(64)])
        p = np.abs(np.fft.rfft(fr, axis=1))**2
        X.append(np.log(p@fb.T + floor).T); Y.append(int(d)); T.append(int(i) < 5)
X = np.array(X, np.float32)[:, None]; Y = np.array(Y); T = np.array(T)
Xtr, Ytr, Xte, Yte = X[~T], Y[~T], X[T], Y[T]
mu, sd = Xtr.mean(), Xtr.std(); Xtr = (Xtr-mu)/sd; Xte = (Xte-mu)/sd
print('features', X.shape, 'floor share', (X <= math.log(floor)+1e-3).mean(), flush=True)
torch.manual_seed(1); rng = np.random.default_rng(1)
P = (lambda: nn.AvgPool2d(2)) if pool == 'avg' else (lambda: nn.MaxPool2d(2))
net = nn.Sequential(nn.Conv2d(1,16,3,padding=1), nn.ReLU(), nn.BatchNorm2d(16), P(),
    nn.Conv2d(16,32,3,padding=1), nn.ReLU(), nn.BatchNorm2d(32), P(),
    nn.Conv2d(32,64,3,padding=1), nn.ReLU(), nn.BatchNorm2d(64), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    nn.Linear(64,64), nn.ReLU(), nn.Linear(64,10))
opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.01)
steps = epochs*math.ceil(len(Xtr)/64); sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=1e-5)
Xte_t = torch.tensor(Xte)
t0 = time.time()
for ep in range(epochs):
    net.train(); perm = rng.permutation(len(Xtr)); correct = 0
    for b in range(0, len(perm), 64):
        idx = perm[b:b+64]; xb = Xtr[idx].copy()
        for s in xb:
            wdt = rng.integers(0, 9); st = rng.integers(0, 64-wdt+1); s[..., st:st+wdt] = 0
        xb = torch.tensor(xb); yb = torch.tensor(Ytr[idx])
        out = net(xb); loss = nn.functional.cross_entropy(out, yb)
        opt.zero_grad(); loss.backward(); nn.utils.clip_grad_norm_(net.parameters(), 1.0); opt.step(); sched.step()
        correct += (out.argmax(1) == yb).sum().item()
    net.eval()
    with torch.no_grad(): acc = (net(Xte_t).argmax(1).numpy() == Yte).mean()
    print(f'epoch {ep+1} train {correct/len(Xtr):.3f} test {acc:.3f} {time.time()-t0:.0f}s', flush=True)
