"""NAB standard-profile scorer and alert-rule exploration over a dump of the detector's per-row
scores (tests/models_nab.rs dump_scores). Usage: python3 scripts/validation/nab_rules.py DUMP_DIR
Exploration only: kept out of the tests; see docs/models.md "NAB floors: this session"."""
import math, glob, os, sys, itertools
def ss(x):
    if x >= 3.0: return -1.0
    return 2.0/(1.0+math.exp(5.0*x))-1.0
MAXTP = ss(-1.0)
def score(det, wins):
    n=len(det); prob=min(int(math.floor(0.15*n)),750)
    part=[None]*len(wins); fp=0.0; prev=None; wi=0
    for i in range(n):
        while wi<len(wins) and wins[wi][1]<i:
            l,r=wins[wi]; prev=(r,r-l+1); wi+=1
        inw = wi<len(wins) and wins[wi][0]<=i
        if i<prob: continue
        if inw:
            l,r=wins[wi]; w=r-l+1
            if part[wi] is None: part[wi]=-1.0
            if det[i]:
                s=ss(-((r-i+1)/w))/MAXTP
                part[wi]=max(part[wi],s)
        elif det[i]:
            past = 3.0 if prev is None else abs(i-prev[0])/max(prev[1]-1,1)
            fp += ss(past)*0.11
    return fp+sum(p for p in part if p is not None)
def load(d):
    files=[]
    for p in sorted(glob.glob(d+'/*')):
        name=os.path.basename(p); cat,fn=name.split('__',1)
        with open(p) as f:
            h=f.readline().strip()[2:].split(' ')
            step=int(h[0].split('=')[1]); ws=h[1].split('=')[1]
            wins=[]
            for x in ws.split(','):
                if not x: continue
                a,b=map(int,x.split(':'))
                if b>a: wins.append((a,b-1))
            f.readline()
            rows=[]
            for line in f:
                c=line.rstrip().split(',')
                t,v,z,sz,l,st,e=c[:7]
                extra=tuple(float(x) for x in c[7:])
                rows.append((int(t),float(v),float(z),float(sz),float(l),st,float(e))+extra)
        files.append(dict(cat=cat,name=fn,step=step,wins=wins,rows=rows))
    return files
def season(step):
    if step==86400: return 7
    if 300<=step<=3600 and 86400%step==0: return 86400//step
    return None
def evaluate(files, alerts_fn, verbose=False):
    cats={}
    out=[]
    for f in files:
        al=alerts_fn(f)
        n=len(al); wins=f['wins']
        prob=min(int(math.floor(0.15*n)),750)
        perf=[False]*n
        for l,r in wins:
            s=max(l,prob)
            if s<=r: perf[s]=True
        raw=score(al,wins); null=score([False]*n,wins); pf=score(perf,wins)
        inw=lambda i: any(l<=i<=r for l,r in wins)
        fp=sum(1 for i in range(n) if al[i] and not inw(i))
        det=sum(1 for l,r in wins if any(al[l:r+1]))
        c=cats.setdefault(f['cat'],[0,0,0,0,0,0,0])
        for k,v in enumerate([raw,null,pf,fp,det,len(wins),0]): c[k]+=v
        c[6]=max(c[6],fp)
        out.append((f['cat'],f['name'],raw,fp,det,len(wins)))
    tot=[0]*7
    res={}
    for k,c in sorted(cats.items()):
        for i in range(6): tot[i]+=c[i]
        tot[6]=max(tot[6],c[6])
        res[k]=(100*(c[0]-c[1])/(c[2]-c[1]) if c[2]>c[1] else None, c[3], c[4], c[5], c[6])
    res['overall']=(100*(tot[0]-tot[1])/(tot[2]-tot[1]), tot[3], tot[4], tot[5], tot[6])
    if verbose:
        for o in out: print('%-22s %-40s raw %7.2f fp %3d det %d/%d'%o)
    return res
def fmt(res):
    s=[]
    for k in ['overall','artificialNoAnomaly','artificialWithAnomaly','realAWSCloudwatch','realAdExchange','realTraffic']:
        v=res[k]
        sc='-' if v[0] is None else '%.1f'%v[0]
        s.append('%s=%s(fp%d,%d/%d,max%d)'%(k[:8],sc,v[1],v[2],v[3],v[4]))
    return ' '.join(s)
SC=('normal','alert','anomalous')
def episodes(fi, quiet, anomalous):
    """One alert per episode: an anomalous row alerts only after `quiet` cycles with no
    anomalous row. `anomalous(row, calm)` judges a row given the rows since the last
    anomalous one."""
    q=int(round((season(fi['step']) or 24)*quiet))
    out=[]; calm=10**9
    for r in fi['rows']:
        an=anomalous(r, calm)
        out.append(an and calm>=q)
        calm=0 if an else calm+1
    return out
def rule(thr=1.5,min_z=6.0,rf=0.25,quiet=0,bar_h=None,bar_k=1.0,budget=None):
    def f(fi):
        cyc=season(fi['step']) or 24
        refr=int(round(cyc*rf)); q=int(round(cyc*quiet))
        out=[]; since=10**9; calm=10**9; bar=thr
        for (t,v,z,sz,l,st,e,*_) in fi['rows']:
            if st not in SC: out.append(False); continue
            an = l>=thr and max(abs(z),abs(sz))>=min_z
            since+=1
            if bar_h is not None:
                bar = thr + (bar-thr)*(0.5**(1.0/(bar_h*cyc)))
            a=False
            if an and since>refr and calm>=q and (bar_h is None or l>=bar):
                a=True; since=0
                if bar_h is not None: bar=max(bar, l*bar_k)
            calm = 0 if an else calm+1
            out.append(a)
        return out
    return f
if __name__=='__main__':
    files=load(sys.argv[1])
    r=evaluate(files, rule(), verbose=True); print(fmt(r))
