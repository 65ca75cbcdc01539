package bench

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"os"
	"strings"
	"text/tabwriter"
)

// WriteTable prints the report as a table.
func (rep *Report) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, args...)...) }
	row("scenario", "%s", rep.Scenario)
	row("target", "%s", rep.Target)
	row("clients", "%d", rep.Clients)
	row("duration", "%.1f s", rep.DurationS)
	row("throughput", "%.2f Mbit/s (%d bytes)", rep.MbpsAvg, rep.Bytes)
	row("frames", "%d (%.1f/s)", rep.Frames, rep.FPSAvg)
	row("operations", "%d (%.1f/s)", rep.Ops, rep.OpsPerSAvg)
	row("errors", "%d", rep.Errors)
	if rep.Retries > 0 {
		row("retried requests", "%d", rep.Retries)
	}
	row("stalls/freezes", "%d", rep.Stalls)
	if rep.Packets > 0 {
		row("rtp packets", "%d, lost %d (%.2f%%; %d of them audio)", rep.Packets, rep.Lost, 100*float64(rep.Lost)/float64(rep.Packets+rep.Lost), rep.LostAudio)
	}
	dist := func(name string, d Dist) {
		if d.N > 0 {
			row(name, "p50 %.0f ms  p95 %.0f ms  p99 %.0f ms  min %.0f  max %.0f  (n=%d)", d.P50, d.P95, d.P99, d.Min, d.Max, d.N)
		}
	}
	dist("glass-to-glass (recv)", rep.Latency)
	dist("glass-to-glass (display)", rep.Display)
	dist("live-edge delay", rep.EdgeDelay)
	dist("op latency", rep.OpLatency)
	if s := rep.Server; s != nil {
		row("server", "%s pid %d: cpu avg %.0f%% max %.0f%% (of one core), rss max %.0f MB", s.Name, s.PID, s.CPUAvg, s.CPUMax, s.RSSMaxMB)
	}
	row("host cpu", "avg %.0f%% max %.0f%% (all cores)", rep.HostCPUAvg, rep.HostCPUMax)
	for _, n := range rep.Notes {
		row("note", "%s", n)
	}
	for i, e := range rep.ErrorSample {
		if i == 5 {
			row("", "... %d more", len(rep.ErrorSample)-5)
			break
		}
		row("error", "%s", e)
	}
	tw.Flush()
}

// WriteJSON writes the report to path.
func (rep *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("report json: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("report json: %w", err)
	}
	return nil
}

type series struct {
	name  string
	color string
	y     []float64
}

// svgChart draws a line chart as inline SVG: no scripts, no CDN, so the
// page opens anywhere.
func svgChart(title, unit string, x []float64, ss []series) string {
	const w, h, l, r, t, b = 760.0, 260.0, 60.0, 20.0, 30.0, 40.0
	var xmax, ymax float64 = 1, 1
	for _, v := range x {
		xmax = max(xmax, v)
	}
	for _, s := range ss {
		for _, v := range s.y {
			ymax = max(ymax, v)
		}
	}
	ymax *= 1.1
	px := func(v float64) float64 { return l + v/xmax*(w-l-r) }
	py := func(v float64) float64 { return h - b - v/ymax*(h-t-b) }
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="11">`, w, h)
	fmt.Fprintf(&sb, `<text x="%.0f" y="18" font-size="13" font-weight="bold">%s</text>`, l, html.EscapeString(title))
	for i := 0; i <= 4; i++ {
		v := ymax * float64(i) / 4
		fmt.Fprintf(&sb, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#ddd"/>`, l, w-r, py(v), py(v))
		fmt.Fprintf(&sb, `<text x="%.1f" y="%.1f" text-anchor="end">%.0f</text>`, l-4, py(v)+4, v)
	}
	for i := 0; i <= 5; i++ {
		v := xmax * float64(i) / 5
		fmt.Fprintf(&sb, `<text x="%.1f" y="%.1f" text-anchor="middle">%.0fs</text>`, px(v), h-b+16, v)
	}
	fmt.Fprintf(&sb, `<text x="12" y="%.1f" transform="rotate(-90 12 %.1f)" text-anchor="middle">%s</text>`, (h-b+t)/2, (h-b+t)/2, html.EscapeString(unit))
	for i, s := range ss {
		var pts []string
		for j, v := range s.y {
			if j < len(x) && v > 0 {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(x[j]), py(v)))
			}
		}
		fmt.Fprintf(&sb, `<polyline fill="none" stroke="%s" stroke-width="1.8" points="%s"/>`, s.color, strings.Join(pts, " "))
		fmt.Fprintf(&sb, `<rect x="%.0f" y="%.0f" width="10" height="3" fill="%s"/><text x="%.0f" y="%.0f">%s</text>`,
			w-r-170+float64(i%2)*90, 10+float64(i/2)*12, s.color, w-r-156+float64(i%2)*90, 14+float64(i/2)*12, html.EscapeString(s.name))
	}
	sb.WriteString(`</svg>`)
	return sb.String()
}

// WriteHTML writes a self-contained page with the report and its plots of
// latency and CPU over time.
func (rep *Report) WriteHTML(path string) error {
	var x, p50, p95, cpu, host, rss, mbps []float64
	for _, p := range rep.Timeline {
		x = append(x, p.T)
		p50 = append(p50, p.LatP50)
		p95 = append(p95, p.LatP95)
		cpu = append(cpu, p.CPU)
		host = append(host, p.HostCPU)
		rss = append(rss, p.RSSMB)
		mbps = append(mbps, p.Mbps)
	}
	var table strings.Builder
	rep.WriteTable(&table)
	var sb strings.Builder
	fmt.Fprintf(&sb, "<!doctype html><html><head><meta charset=\"utf-8\"><title>liveengine bench %s</title>", html.EscapeString(rep.Scenario))
	sb.WriteString(`<style>body{font-family:sans-serif;margin:24px;max-width:820px}pre{background:#f6f6f6;padding:12px;overflow:auto}</style></head><body>`)
	fmt.Fprintf(&sb, "<h1>liveengine bench %s</h1><p>%s, started %s</p>", html.EscapeString(rep.Scenario), html.EscapeString(rep.Target), rep.StartedAt.Format("2006-01-02 15:04:05 UTC"))
	fmt.Fprintf(&sb, "<pre>%s</pre>", html.EscapeString(table.String()))
	sb.WriteString(svgChart("Latency per second", "ms", x, []series{{"p50", "#1f77b4", p50}, {"p95", "#d62728", p95}}))
	cs := []series{{"host (all cores)", "#7f7f7f", host}}
	if rep.Server != nil {
		cs = append(cs, series{"server (1 core=100)", "#2ca02c", cpu})
	}
	sb.WriteString(svgChart("CPU", "%", x, cs))
	if rep.Server != nil {
		sb.WriteString(svgChart("Server RSS", "MB", x, []series{{"rss", "#9467bd", rss}}))
	}
	sb.WriteString(svgChart("Throughput", "Mbit/s", x, []series{{"Mbit/s", "#ff7f0e", mbps}}))
	sb.WriteString("</body></html>\n")
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		return fmt.Errorf("report html: %w", err)
	}
	return nil
}
