"""PyTorch replica of keras_cnn's CIFAR/MNIST recipes, used once to search recipes on a lent GPU.

Not part of the product and not imported by it: it mirrors keras_cnn's models and training
(He/Glorot truncated init, L2 on kernels only, SGD+Nesterov, warm-up + cosine / one-cycle,
EMA with the TF tutorial's warm-up, crop/flip/cutout, per-channel standardization, a
stratified validation split) closely enough to rank recipe choices quickly. Check of that
claim: ResNet-20, 10 epochs, gave 81.86% here against 82.60% / 82.72% from keras_cnn itself.

    python pack.py CIFAR10_TRAIN_FOLDER # CIFAR-10 JPEGs -> one blob beside this file
    python driver.py runs.txt 480       # every line of runs.txt as a process on the GPU
"""
import argparse, io, json, math, os, sys, time
import numpy as np, torch, torch.nn as nn, torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))


def decode_cifar():
    cache = os.path.join(HERE, "cifar_u8.npy")
    if os.path.exists(cache):
        return np.load(cache), np.load(os.path.join(HERE, "cifar_labels.npy"))
    from PIL import Image
    from concurrent.futures import ProcessPoolExecutor
    off = np.load(os.path.join(HERE, "cifar_offsets.npy"))
    with ProcessPoolExecutor(16) as pool:
        parts = list(pool.map(_decode_range, [(s, min(s + 2500, len(off) - 1)) for s in range(0, len(off) - 1, 2500)]))
    out = np.concatenate(parts)
    np.save(cache + ".tmp.npy", out); os.replace(cache + ".tmp.npy", cache)
    return out, np.load(os.path.join(HERE, "cifar_labels.npy"))


def _decode_range(bounds):
    from PIL import Image
    blob = open(os.path.join(HERE, "cifar_blob.bin"), "rb").read()
    off = np.load(os.path.join(HERE, "cifar_offsets.npy"))
    return np.stack([np.asarray(Image.open(io.BytesIO(blob[off[i]:off[i + 1]])).convert("RGB")) for i in range(*bounds)])


def load(dataset):
    if dataset == "mnist":
        d = np.load(os.path.join(HERE, "mnist.npz"))
        return d["x_train"][..., None], d["y_train"].astype(np.int64), 10000
    x, y = decode_cifar()
    return x, y, 5000


def stratified_split(labels, val_size, seed):
    rng = np.random.default_rng(seed)
    val = []
    classes = np.unique(labels)
    for c in classes:
        idx = np.flatnonzero(labels == c)
        val.extend(rng.permutation(idx)[: val_size // len(classes)])
    val = np.sort(np.array(val))
    train = np.setdiff1d(np.arange(len(labels)), val)
    return train, val


def he_trunc_(w):
    fan_in = w[0].numel()
    std = math.sqrt(2.0 / fan_in) / 0.87962566103423978
    nn.init.trunc_normal_(w, 0.0, std, -2 * std, 2 * std)


def glorot_(w):
    nn.init.xavier_uniform_(w)


def init_model(m, kind):
    for mod in m.modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            (he_trunc_ if kind == "he" else glorot_)(mod.weight)
            if mod.bias is not None:
                nn.init.zeros_(mod.bias)


def bn(c):
    return nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)


class Block(nn.Module):
    def __init__(s, cin, cout, stride):
        super().__init__()
        s.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False); s.b1 = bn(cout)
        s.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False); s.b2 = bn(cout)
        s.sc = nn.Sequential()
        if stride != 1 or cin != cout:
            s.sc = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), bn(cout))

    def forward(s, x):
        y = F.relu(s.b1(s.c1(x)))
        return F.relu(s.b2(s.c2(y)) + s.sc(x))


class ResNet(nn.Module):
    def __init__(s, depth=20, nc=10, width=16):
        super().__init__()
        n = (depth - 2) // 6
        s.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), bn(width), nn.ReLU())
        blocks, cin = [], width
        for i, cout in enumerate([width, 2 * width, 4 * width]):
            for j in range(n):
                blocks.append(Block(cin, cout, 2 if (i > 0 and j == 0) else 1)); cin = cout
        s.blocks = nn.Sequential(*blocks)
        s.fc = nn.Linear(cin, nc)

    def forward(s, x):
        return s.fc(F.adaptive_avg_pool2d(s.blocks(s.stem(x)), 1).flatten(1))


class ResNet18(nn.Module):
    def __init__(s, nc=10, layout=(2, 2, 2, 2)):
        super().__init__()
        s.stem = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), bn(64), nn.ReLU())
        blocks, cin = [], 64
        for i, (cout, n) in enumerate(zip([64, 128, 256, 512], layout)):
            for j in range(n):
                blocks.append(Block(cin, cout, 2 if (i > 0 and j == 0) else 1)); cin = cout
        s.blocks = nn.Sequential(*blocks)
        s.fc = nn.Linear(512, nc)

    def forward(s, x):
        return s.fc(F.adaptive_avg_pool2d(s.blocks(s.stem(x)), 1).flatten(1))


class LRN(nn.Module):
    def forward(s, x):  # TF lrn(depth_radius=4, bias=1, alpha=1e-3/9, beta=.75) == torch LRN(size 9, alpha 1e-3)
        return F.local_response_norm(x.float(), 9, alpha=1e-3, beta=0.75, k=1.0).to(x.dtype)


class AlexNet(nn.Module):
    def __init__(s, nc=10, dropout=0.0, bn_=False):
        super().__init__()
        s.c1 = nn.Conv2d(3, 64, 5, padding=2); s.c2 = nn.Conv2d(64, 64, 5, padding=2)
        s.lrn = LRN(); s.fc1 = nn.Linear(8 * 8 * 64, 384); s.fc2 = nn.Linear(384, 192); s.fc3 = nn.Linear(192, nc)
        s.drop = nn.Dropout(dropout)

    def forward(s, x):
        x = s.lrn(F.max_pool2d(F.relu(s.c1(x)), 3, 2, 1))
        x = F.max_pool2d(s.lrn(F.relu(s.c2(x))), 3, 2, 1)
        x = x.permute(0, 2, 3, 1).flatten(1)  # NHWC flatten like Keras
        x = s.drop(F.relu(s.fc1(x)))
        return s.fc3(s.drop(F.relu(s.fc2(x))))


def cbr(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1, bias=False), bn(cout), nn.ReLU())


class Res(nn.Module):
    def __init__(s, c):
        super().__init__(); s.a = cbr(c, c); s.b = cbr(c, c)

    def forward(s, x):
        return x + s.b(s.a(x))


class ResNet9(nn.Module):
    def __init__(s, nc=10, w=64):
        super().__init__()
        s.net = nn.Sequential(cbr(3, w), cbr(w, 2 * w), nn.MaxPool2d(2), Res(2 * w), cbr(2 * w, 4 * w), nn.MaxPool2d(2),
                              cbr(4 * w, 8 * w), nn.MaxPool2d(2), Res(8 * w), nn.AdaptiveMaxPool2d(1), nn.Flatten())
        s.fc = nn.Linear(8 * w, nc, bias=False)

    def forward(s, x):
        return s.fc(s.net(x)) * 0.125


class MnistCNN(nn.Module):
    def __init__(s, filters=(32, 64), dense=128, dropout=0.25, bn_=False):
        super().__init__()
        layers, cin = [], 1
        for f in filters:
            layers += [nn.Conv2d(cin, f, 3, bias=not bn_)] + ([bn(f)] if bn_ else []) + [nn.ReLU()]; cin = f
        s.features = nn.Sequential(*layers, nn.MaxPool2d(2))
        s.d1 = nn.Dropout(dropout); side = (28 - 2 * len(filters)) // 2; s.fc1 = nn.Linear(side * side * filters[-1], dense); s.d2 = nn.Dropout(min(2 * dropout, 0.5)); s.fc2 = nn.Linear(dense, 10)

    def forward(s, x):
        x = s.features(x).permute(0, 2, 3, 1).flatten(1)
        return s.fc2(s.d2(F.relu(s.fc1(s.d1(x)))))


class MnistCNN4(nn.Module):
    """conv32-conv32-pool-conv64-conv64-pool-dense (BN), 'same' padding."""
    def __init__(s, dense=256, dropout=0.25):
        super().__init__()
        def c(i, o):
            return [nn.Conv2d(i, o, 3, padding=1, bias=False), bn(o), nn.ReLU()]
        s.features = nn.Sequential(*c(1, 32), *c(32, 32), nn.MaxPool2d(2), *c(32, 64), *c(64, 64), nn.MaxPool2d(2))
        s.d1 = nn.Dropout(dropout); s.fc1 = nn.Linear(7 * 7 * 64, dense); s.d2 = nn.Dropout(min(2 * dropout, .5)); s.fc2 = nn.Linear(dense, 10)

    def forward(s, x):
        x = s.features(x).permute(0, 2, 3, 1).flatten(1)
        return s.fc2(s.d2(F.relu(s.fc1(s.d1(x)))))


def lr_at(step, a, spe, total):
    warm = a.warmup * spe
    if a.schedule == "onecycle":
        peak = 0.3 * total; start = a.lr / 25
        return start + (a.lr - start) * step / peak if step < peak else max(a.lr - a.lr * (step - peak) / (total - peak), 0.0)
    after = max(step - warm, 0); span = max(total - warm, 1)
    if a.schedule == "cosine":
        lr = 0.5 * a.lr * (1 + math.cos(math.pi * min(after / span, 1)))
    elif a.schedule == "linear":
        lr = a.lr * (1 - min(after / span, 1))
    else:
        lr = a.lr
    if warm > 0 and step < warm:
        lr = lr * (step + 1) / warm
    return lr


def augment(xb, a, gen):
    # xb uint8 (B,H,W,C) on GPU
    B, H, W, C = xb.shape
    dev = xb.device
    rows = torch.arange(H, device=dev)[None].expand(B, H)
    cols = torch.arange(W, device=dev)[None].expand(B, W)
    if a.flip:
        f = torch.rand(B, 1, device=dev, generator=gen) < 0.5
        cols = torch.where(f, W - 1 - cols, cols)
    if a.pad:
        p = a.pad
        xb = F.pad(xb.permute(0, 3, 1, 2), (p, p, p, p)).permute(0, 2, 3, 1)
        off = torch.randint(0, 2 * p + 1, (B, 2), device=dev, generator=gen)
        rows = rows + off[:, :1]; cols = cols + off[:, 1:]
    bi = torch.arange(B, device=dev)[:, None, None]
    return xb[bi, rows[:, :, None], cols[:, None, :]]


def cutout(x, size, gen):  # x float NCHW, after normalization
    B, C, H, W = x.shape
    dev = x.device
    c = torch.rand(B, 2, device=dev, generator=gen)
    cy = (c[:, 0] * H).long()[:, None]; cx = (c[:, 1] * W).long()[:, None]
    ys = torch.arange(H, device=dev)[None]; xs = torch.arange(W, device=dev)[None]
    r = (ys >= cy - size // 2) & (ys < cy - size // 2 + size)
    cc = (xs >= cx - size // 2) & (xs < cx - size // 2 + size)
    hole = (r[:, :, None] & cc[:, None, :])[:, None]
    return torch.where(hole, torch.zeros_like(x), x)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--name", required=True); p.add_argument("--model", required=True)
    p.add_argument("--dataset", default="cifar10"); p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch", type=int, default=128); p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--opt", default="sgd"); p.add_argument("--nesterov", type=int, default=1)
    p.add_argument("--wd", type=float, default=5e-4); p.add_argument("--ls", type=float, default=0.0)
    p.add_argument("--schedule", default="cosine"); p.add_argument("--warmup", type=float, default=0.0)
    p.add_argument("--pad", type=int, default=0); p.add_argument("--flip", type=int, default=0)
    p.add_argument("--cutout", type=int, default=0); p.add_argument("--ema", type=float, default=0.0)
    p.add_argument("--dropout", type=float, default=0.0); p.add_argument("--bn", type=int, default=0)
    p.add_argument("--seed", type=int, default=0); p.add_argument("--out", required=True)
    p.add_argument("--bf16", type=int, default=1); p.add_argument("--width", type=int, default=64); p.add_argument("--limit", type=int, default=0)
    a = p.parse_args()
    torch.manual_seed(a.seed); np.random.seed(a.seed)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    x, y, val_size = load(a.dataset)
    tr, va = stratified_split(y, val_size, 0)
    if a.limit: tr = np.sort(np.random.default_rng(0).permutation(tr)[:a.limit]); va = va[::max(1, len(va) * 4 // a.limit)]
    xt = torch.from_numpy(x[tr]).to(dev); yt = torch.from_numpy(y[tr]).to(dev)
    xv = torch.from_numpy(x[va]).to(dev); yv = torch.from_numpy(y[va]).to(dev)
    mean = xt.float().mean((0, 1, 2)); std = xt.float().std((0, 1, 2), unbiased=False)
    norm = lambda u: ((u.float() - mean) / std).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
    if a.model == "resnet20": m = ResNet(20); kind = "he"
    elif a.model == "resnet32": m = ResNet(32); kind = "he"
    elif a.model == "resnet56": m = ResNet(56); kind = "he"
    elif a.model == "resnet18": m = ResNet18(); kind = "he"
    elif a.model == "resnet20w": m = ResNet(20, width=32); kind = "he"
    elif a.model == "alexnet": m = AlexNet(dropout=a.dropout); kind = "glorot"
    elif a.model == "resnet9": m = ResNet9(w=a.width); kind = "he"
    elif a.model == "cnn": m = MnistCNN(bn_=bool(a.bn), dropout=a.dropout or 0.25); kind = "glorot"
    elif a.model == "cnn4": m = MnistCNN4(); kind = "he"
    m = m.to(dev).to(memory_format=torch.channels_last)
    with torch.no_grad():
        m.train(); m(norm(xt[:2]))  # materialize lazy layers
    init_model(m, kind)
    kernels = [q for n_, q in m.named_parameters() if q.ndim > 1]
    others = [q for n_, q in m.named_parameters() if q.ndim <= 1]
    groups = [{"params": kernels, "weight_decay": a.wd}, {"params": others, "weight_decay": 0.0}]
    if a.opt == "sgd":
        opt = torch.optim.SGD(groups, lr=a.lr, momentum=0.9, nesterov=bool(a.nesterov))
    elif a.opt == "adam":
        opt = torch.optim.Adam(groups, lr=a.lr, eps=1e-7)
    elif a.opt == "adadelta":
        opt = torch.optim.Adadelta(groups, lr=a.lr, rho=0.95, eps=1e-7)
    ema = None
    if a.ema:
        ema = {k: v.detach().clone() for k, v in m.state_dict().items() if v.dtype.is_floating_point}
    gen = torch.Generator(device=dev); gen.manual_seed(a.seed)
    n = len(xt); spe = n // a.batch; total = spe * a.epochs
    step = 0
    out = open(a.out, "a")
    t0 = time.time()

    def evaluate(model):
        model.eval(); correct = 0
        with torch.no_grad(), torch.autocast(dev, torch.bfloat16, enabled=bool(a.bf16)):
            for i in range(0, len(xv), 1000):
                correct += (model(norm(xv[i:i + 1000])).argmax(1) == yv[i:i + 1000]).sum().item()
        model.train(); return correct / len(xv)

    for epoch in range(1, a.epochs + 1):
        perm = torch.randperm(n, device=dev, generator=gen)
        tl = torch.zeros((), device=dev)
        for b in range(spe):
            idx = perm[b * a.batch:(b + 1) * a.batch]
            xb = xt[idx]
            if a.pad or a.flip:
                xb = augment(xb, a, gen)
            xb = norm(xb)
            if a.cutout:
                xb = cutout(xb, a.cutout, gen)
            lr = lr_at(step, a, spe, total)
            for g in opt.param_groups: g["lr"] = lr
            with torch.autocast(dev, torch.bfloat16, enabled=bool(a.bf16)):
                loss = F.cross_entropy(m(xb).float(), yt[idx], label_smoothing=a.ls)
            opt.zero_grad(set_to_none=True); loss.backward(); opt.step(); step += 1
            tl += loss.detach()
            if ema is not None:
                d = min(a.ema, (1 + step) / (10 + step))
                with torch.no_grad():
                    sd = m.state_dict()
                    for k, v in ema.items():
                        v.mul_(d).add_(sd[k].detach(), alpha=1 - d)
        row = {"name": a.name, "epoch": epoch, "train_loss": round(tl.item() / spe, 4), "val": evaluate(m), "t": round(time.time() - t0, 1)}
        if ema is not None:
            live = {k: v.clone() for k, v in m.state_dict().items()}
            m.load_state_dict({**live, **ema}); row["ema_val"] = evaluate(m); m.load_state_dict(live)
        out.write(json.dumps(row) + "\n"); out.flush()
    out.write(json.dumps({"name": a.name, "final": True, "args": vars(a), "val": row["val"], "ema_val": row.get("ema_val"), "t": row["t"]}) + "\n")


if __name__ == "__main__":
    main()
