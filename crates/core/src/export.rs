//! Renders a compiled graph as Mermaid or Graphviz DOT text, for docs and the CLI.

use std::fmt::Write as _;

use crate::graph::{EdgeKind, Graph, END, START};

impl<S> Graph<S> {
    /// The graph as a Mermaid flowchart. Static edges are solid, conditional edges
    /// dotted, fan-out edges thick and labelled `fan-out`, join edges labelled `join`.
    pub fn to_mermaid(&self) -> String {
        let mut out = String::from("flowchart TD\n");
        let ids = self.ids();
        for (name, id) in &ids {
            let line = match name.as_str() {
                START => format!("    {id}([START])\n"),
                END => format!("    {id}([END])\n"),
                _ => format!("    {id}[\"{}\"]\n", name.replace('"', "#quot;")),
            };
            out.push_str(&line);
        }
        for edge in self.edge_views() {
            let (from, to) = (id_of(&ids, &edge.from), id_of(&ids, &edge.to));
            let arrow = match edge.kind {
                EdgeKind::Static => "-->",
                EdgeKind::Conditional => "-.->",
                EdgeKind::FanOut => "==>|fan-out|",
                EdgeKind::Join => "-->|join|",
            };
            let _ = writeln!(out, "    {from} {arrow} {to}");
        }
        out
    }

    /// The graph in Graphviz DOT.
    pub fn to_dot(&self) -> String {
        let mut out = format!("digraph \"{}\" {{\n    rankdir=TB;\n", escape_dot(&self.inner.name));
        let ids = self.ids();
        for (name, id) in &ids {
            let (label, shape) = match name.as_str() {
                START => ("START".to_owned(), "oval"),
                END => ("END".to_owned(), "oval"),
                _ => (escape_dot(name), "box"),
            };
            let _ = writeln!(out, "    {id} [label=\"{label}\", shape={shape}];");
        }
        for edge in self.edge_views() {
            let (from, to) = (id_of(&ids, &edge.from), id_of(&ids, &edge.to));
            let style = match edge.kind {
                EdgeKind::Static => "",
                EdgeKind::Conditional => " [style=dashed]",
                EdgeKind::FanOut => " [style=bold, label=\"fan-out\"]",
                EdgeKind::Join => " [label=\"join\"]",
            };
            let _ = writeln!(out, "    {from} -> {to}{style};");
        }
        out.push_str("}\n");
        out
    }

    /// Safe identifiers for every node (names may hold any character): START, the
    /// nodes in order, END.
    fn ids(&self) -> Vec<(String, String)> {
        let mut ids = vec![(START.to_owned(), "START".to_owned())];
        ids.extend(self.inner.nodes.iter().enumerate().map(|(i, n)| (n.name.clone(), format!("n{i}"))));
        ids.push((END.to_owned(), "END".to_owned())); // `end` is a Mermaid keyword
        ids
    }
}

fn id_of<'a>(ids: &'a [(String, String)], name: &str) -> &'a str {
    ids.iter().find(|(n, _)| n == name).map_or("unknown", |(_, id)| id.as_str())
}

fn escape_dot(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}
