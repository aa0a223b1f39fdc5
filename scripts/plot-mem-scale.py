#!/usr/bin/env python3
"""Plot resident memory by number of campaigns (issue 15.1) as an SVG, without plotting
libraries: reads the summary that scripts/mem-scale.sh prints (tab-separated, with its header)
and writes log-log lines of steady RSS and peak (VmHWM), with the 250 MB ceiling.

Usage: scripts/plot-mem-scale.py docs/mem-scale.tsv docs/mem-scale.svg
"""
import math
import sys

rows = []
with open(sys.argv[1]) as f:
    header = f.readline().rstrip("\n").split("\t")
    for line in f:
        if line.strip():
            rows.append(dict(zip(header, line.rstrip("\n").split("\t"))))
n = [float(r["campaigns"]) for r in rows]
steady = [float(r["rss_steady_mib"]) for r in rows]
peak = [float(r["peak_vmhwm_mib"]) for r in rows]

W, H, L, R, T, B = 640, 400, 70, 20, 30, 50
x0, x1 = math.log10(min(n)) - 0.2, math.log10(max(n)) + 0.2
y0, y1 = 1.0, math.log10(max(max(peak), 250) * 1.5)


def px(v):
    return L + (math.log10(v) - x0) / (x1 - x0) * (W - L - R)


def py(v):
    return H - B - (math.log10(v) - y0) / (y1 - y0) * (H - T - B)


out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
       f'<rect width="{W}" height="{H}" fill="white"/>',
       f'<text x="{W / 2}" y="18" text-anchor="middle">adpulse resident memory by live campaigns (demo, models and actions on)</text>']
for e in range(int(math.floor(x0)) + 1, int(math.ceil(x1)) + 1):
    v = 10 ** e
    out.append(f'<line x1="{px(v):.1f}" y1="{T}" x2="{px(v):.1f}" y2="{H - B}" stroke="#ddd"/>')
    out.append(f'<text x="{px(v):.1f}" y="{H - B + 16}" text-anchor="middle">{v:,}</text>')
for v in [10, 20, 50, 100, 200, 500, 1000, 2000, 5000]:
    if y0 <= math.log10(v) <= y1:
        out.append(f'<line x1="{L}" y1="{py(v):.1f}" x2="{W - R}" y2="{py(v):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{L - 6}" y="{py(v) + 4:.1f}" text-anchor="end">{v}</text>')
out.append(f'<text x="{W / 2}" y="{H - 12}" text-anchor="middle">campaigns (log)</text>')
out.append(f'<text x="16" y="{H / 2}" text-anchor="middle" transform="rotate(-90 16 {H / 2})">MiB (log)</text>')
out.append(f'<line x1="{L}" y1="{py(250 / 1.048576):.1f}" x2="{W - R}" y2="{py(250 / 1.048576):.1f}" stroke="#c00" stroke-dasharray="6 4"/>')
out.append(f'<text x="{W - R - 4}" y="{py(250 / 1.048576) - 5:.1f}" text-anchor="end" fill="#c00">250 MB ceiling</text>')
for name, ys, colour in [("steady RSS", steady, "#1f77b4"), ("peak (VmHWM)", peak, "#ff7f0e")]:
    pts = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in zip(n, ys))
    out.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"/>')
    for a, b in zip(n, ys):
        out.append(f'<circle cx="{px(a):.1f}" cy="{py(b):.1f}" r="3" fill="{colour}"/>')
        out.append(f'<text x="{px(a) + 5:.1f}" y="{py(b) - 6:.1f}" fill="{colour}">{b:.0f}</text>')
for i, (name, colour) in enumerate([("steady RSS", "#1f77b4"), ("peak (VmHWM)", "#ff7f0e")]):
    y = T + 14 + 16 * i
    out.append(f'<line x1="{L + 10}" y1="{y}" x2="{L + 30}" y2="{y}" stroke="{colour}" stroke-width="2"/>')
    out.append(f'<text x="{L + 36}" y="{y + 4}">{name}</text>')
out.append("</svg>")
with open(sys.argv[2], "w") as f:
    f.write("\n".join(out) + "\n")
