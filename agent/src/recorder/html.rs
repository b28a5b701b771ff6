//! The story as one self-contained HTML file: the story's JSON and a small script that draws it
//! as an SVG graph — process nodes in their tree, file / address / domain nodes beside them,
//! edges labelled with the action and its time — with zoom, pan and a details panel on click.
//! No network access: everything is inline.

use super::story::Story;

const PAGE: &str = r##"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>Osprey story</title>
<style>
body{margin:0;font:13px system-ui,sans-serif;background:#f7f7f9;color:#222;display:flex;height:100vh}
#graph{flex:1;overflow:hidden;cursor:grab}
#side{width:380px;overflow:auto;border-left:1px solid #ccc;background:#fff;padding:10px}
h1{font-size:15px;margin:0 0 6px} h2{font-size:13px;margin:12px 0 4px}
.node rect{stroke:#345;stroke-width:1.2;rx:6}
.process rect{fill:#dbe9ff} .process.subject rect{fill:#ffd6d6;stroke:#b00;stroke-width:2}
.process.root rect{stroke:#070;stroke-width:2.5}
.file rect{fill:#fff4c8} .address rect{fill:#d8f5d8} .domain rect{fill:#ead8f5}
.node text{font-size:12px;pointer-events:none} .node{cursor:pointer}
.edge{stroke:#789;fill:none;stroke-width:1.2} .edge.alert{stroke:#c00} .edge.remote{stroke:#d60;stroke-width:2.2;stroke-dasharray:6 3}
.hostlabel{font-size:10px;fill:#a50}
.elabel{font-size:10px;fill:#456}
.step{font-family:ui-monospace,monospace;font-size:11px;white-space:pre-wrap;margin:2px 0}
.alert{color:#b00}
</style></head>
<body>
<div id="graph"><svg id="svg" xmlns="http://www.w3.org/2000/svg" width="100%" height="100%"><g id="view"></g></svg></div>
<div id="side"><h1 id="title"></h1><div id="summary"></div><h2>Details</h2><div id="details">Click a node.</div></div>
<script type="application/json" id="story">__STORY__</script>
<script>
(function(){
const S=JSON.parse(document.getElementById('story').textContent);
const NS='http://www.w3.org/2000/svg';
const view=document.getElementById('view');
function el(n,a,p){const e=document.createElementNS(NS,n);for(const k in a)e.setAttribute(k,a[k]);(p||view).appendChild(e);return e;}
function base(p){return p?p.split('/').pop():'?';}
function tm(s){return s.substring(11,23);}
const W=210,H=40,DX=240,DY=58;
const pos={};let row=0;let maxDepth=0;
S.processes.forEach(p=>{pos[p.entity_id]={x:20+p.depth*DX,y:20+row*DY};row++;maxDepth=Math.max(maxDepth,p.depth);});
const tx=20+(maxDepth+1)*DX+100;const tpos={};let trow=0;
S.timeline.forEach(s=>{if(s.target){const k=s.target.type+':'+s.target.name;if(!(k in tpos)){tpos[k]={x:tx,y:20+trow*DY,t:s.target};trow++;}}});
const byId={};S.processes.forEach(p=>byId[p.entity_id]=p);
const edges=el('g',{id:'edges'});const nodes=el('g',{id:'nodes'});
function edge(a,b,label,cls){const x1=a.x+W,y1=a.y+H/2,x2=b.x,y2=b.y+H/2;const mx=(x1+x2)/2;
 el('path',{d:`M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`,class:'edge '+(cls||'')},edges);
 const t=el('text',{x:mx,y:(y1+y2)/2-3,'text-anchor':'middle',class:'elabel'},edges);t.textContent=label;}
const hosts=new Set(S.processes.map(p=>p.host));const multi=hosts.size>1;
S.processes.forEach(p=>{if(p.parent&&pos[p.parent]){const ex=p.steps.map(i=>S.timeline[i]).find(s=>s.action==='exec');
 const from=byId[p.parent];if(from&&from.host!==p.host){edge(pos[p.parent],pos[p.entity_id],'network → host '+p.host.substring(0,12),'remote');return;}
 edge(pos[p.parent],pos[p.entity_id],(ex?'exec ':'fork ')+tm(ex?ex['@timestamp']:new Date(p.start/1e6).toISOString()));}});
const seen={};S.timeline.forEach(s=>{if(s.target&&pos[s.entity_id]){const k=s.target.type+':'+s.target.name;const e=s.entity_id+'|'+k;(seen[e]=seen[e]||[]).push(s);}});
Object.keys(seen).forEach(e=>{const l=seen[e];const s=l[0];const k=s.target.type+':'+s.target.name;
 const acts=[...new Set(l.map(x=>x.action))];edge(pos[s.entity_id],tpos[k],acts.slice(0,2).join(', ')+(acts.length>2?' +'+(acts.length-2):'')+' '+tm(s['@timestamp']),'');});
function details(lines,title){const d=document.getElementById('details');d.textContent='';const h=document.createElement('b');h.textContent=title;d.appendChild(h);
 lines.forEach(l=>{const e=document.createElement('div');e.className='step'+(l.alert?' alert':'');e.textContent=l.text;d.appendChild(e);});}
S.processes.forEach(p=>{const g=el('g',{class:'node process'+(p.subject?' subject':'')+(p.entity_id===S.root?' root':''),'data-entity':p.entity_id,'data-host':p.host,transform:`translate(${pos[p.entity_id].x},${pos[p.entity_id].y})`},nodes);
 el('rect',{width:W,height:H},g);const t1=el('text',{x:8,y:16},g);t1.textContent=base(p.executable)+'  ['+p.pid+']'+(p.user?'  '+p.user:'');
 const t2=el('text',{x:8,y:32},g);t2.textContent=(p.command_line||'').substring(0,34);
 if(multi){const th=el('text',{x:W-4,y:12,'text-anchor':'end',class:'hostlabel'},g);th.textContent=p.host.substring(0,12);}
 g.addEventListener('click',()=>details(p.steps.map(i=>{const s=S.timeline[i];return {text:tm(s['@timestamp'])+' '+s.action+' '+s.object,alert:s.kind==='alert'};}),(p.command_line||p.executable||'?')+' (pid '+p.pid+')'));});
Object.keys(tpos).forEach(k=>{const o=tpos[k];const g=el('g',{class:'node '+o.t.type,'data-target':o.t.name,transform:`translate(${o.x},${o.y})`},nodes);
 el('rect',{width:W,height:H},g);const t=el('text',{x:8,y:24},g);t.textContent=o.t.name.length>34?'…'+o.t.name.slice(-33):o.t.name;
 g.addEventListener('click',()=>details(S.timeline.filter(s=>s.target&&s.target.type+':'+s.target.name===k).map(s=>({text:tm(s['@timestamp'])+' '+s.action+' by pid '+(byId[s.entity_id]||{}).pid,alert:false})),o.t.type+' '+o.t.name));});
const a=S.alert;document.getElementById('title').textContent=a?('Alert: '+((a.rule||{}).name||'')):'Story';
const r=byId[S.root]||{};document.getElementById('summary').textContent='Root cause: '+(r.executable||'?')+' (pid '+r.pid+') — '+S.root_reason+'. '+S.processes.length+' processes, '+S.timeline.length+' steps.';
let sc=1,ox=0,oy=0;function apply(){view.setAttribute('transform',`translate(${ox},${oy}) scale(${sc})`);}
const g0=document.getElementById('graph');const bw=tx+W+20,bh=20+Math.max(row,trow)*DY;sc=Math.min(1,g0.clientWidth/bw,g0.clientHeight/bh);apply();
const svg=document.getElementById('svg');svg.addEventListener('wheel',e=>{e.preventDefault();sc*=e.deltaY<0?1.1:0.9;apply();});
let drag=null;svg.addEventListener('mousedown',e=>{drag=[e.clientX-ox,e.clientY-oy];});window.addEventListener('mouseup',()=>drag=null);
window.addEventListener('mousemove',e=>{if(drag){ox=e.clientX-drag[0];oy=e.clientY-drag[1];apply();}});
document.body.setAttribute('data-rendered',String(S.processes.length));
})();
</script></body></html>
"##;

/// The story as a self-contained HTML page.
pub fn render(story: &Story) -> String {
    // Inside <script>, `</` could end the element early: JSON allows `<\/` for it.
    let json = serde_json::to_string(story).expect("a story serialises").replace("</", "<\\/");
    PAGE.replace("__STORY__", &json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::story::{ProcessNode, Step};

    #[test]
    fn page_embeds_the_story_safely() {
        let st = Story {
            alert: None,
            subject: "e".into(),
            root: "e".into(),
            root_reason: "r".into(),
            processes: vec![ProcessNode {
                entity_id: "e".into(),
                parent: None,
                depth: 0,
                host: "h".into(),
                pid: 1,
                executable: Some("/bin/sh".into()),
                command_line: Some("sh -c '</script><b>'".into()),
                user: None,
                start_ns: 0,
                steps: vec![0],
                subject: true,
            }],
            timeline: vec![Step {
                id: 1,
                timestamp: "2026-11-22T00:00:00.000Z".into(),
                ts_ns: 0,
                entity_id: "e".into(),
                kind: "event".into(),
                action: "exec".into(),
                object: String::new(),
                target: None,
            }],
        };
        let page = render(&st);
        assert_eq!(page.matches("</script>").count(), 2, "the data cannot close its script element");
        assert!(page.contains(r"<\/script><b>"));
        assert!(!page.contains("http://") || page.matches("http://www.w3.org/2000/svg").count() == page.matches("http://").count());
    }
}
