// Package bench holds LiveEngine's load generators and its glass-to-glass
// latency meter: RTMP and WHIP publishers that stamp their send time into
// every video frame (package stamp), LL-HLS and WHEP viewers that read the
// stamp back, and chat and gift storms against the control API. Every
// scenario takes URLs, so the same run can target LiveEngine or any other
// server speaking the protocols (MediaMTX, for side-by-side figures).
//
// cmd/liveengine runs Main for `liveengine bench SCENARIO [flags]`.
package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
)

// ErrUsage means the command line was wrong; the message says how.
var ErrUsage = errors.New("bench: usage")

// scenario is one load generator.
type scenario struct {
	summary string
	// flags registers the scenario's flags and returns its runner.
	flags func(fs *flag.FlagSet) runner
	// target names what the run points at, for the report.
	target func(fs *flag.FlagSet) string
	// clients is the -n of the run.
	clients func(fs *flag.FlagSet) int
	// framesLabel names the Frames rate on progress lines; "fps" if empty.
	framesLabel string
}

var scenarios = map[string]scenario{}

func register(name string, s scenario) {
	if s.target == nil {
		s.target = func(fs *flag.FlagSet) string { return flagString(fs, "url") }
	}
	if s.clients == nil {
		s.clients = func(fs *flag.FlagSet) int { n, _ := fs.Lookup("n").Value.(flag.Getter).Get().(int); return n }
	}
	scenarios[name] = s
}

func flagString(fs *flag.FlagSet, name string) string {
	if f := fs.Lookup(name); f != nil {
		return f.Value.String()
	}
	return ""
}

// runner is a parsed scenario. prepare does the slow set-up (generating a
// clip, registering users) before the run's clock starts.
type runner interface {
	prepare(ctx context.Context) error
	run(ctx context.Context, r *Run) error
}

// Options are the flags every scenario shares.
type Options struct {
	Duration   time.Duration
	JSON       string
	HTML       string
	ServerPID  int
	ServerName string
	Quiet      bool
}

func commonFlags(fs *flag.FlagSet) *Options {
	o := &Options{}
	fs.DurationVar(&o.Duration, "duration", 30*time.Second, "how long the load runs")
	fs.StringVar(&o.JSON, "json", "", "write the report as JSON to this file")
	fs.StringVar(&o.HTML, "html", "", "write a self-contained HTML page with latency and CPU plots to this file")
	fs.IntVar(&o.ServerPID, "server-pid", 0, "sample this server process's CPU and RSS from /proc")
	fs.StringVar(&o.ServerName, "server-name", "", "sample the newest process with this command name (e.g. liveengine, mediamtx)")
	fs.BoolVar(&o.Quiet, "q", false, "no progress lines")
	return o
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: liveengine bench SCENARIO [flags]\n\nScenarios:\n")
	names := make([]string, 0, len(scenarios))
	for n := range scenarios {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-13s %s\n", n, scenarios[n].summary)
	}
	fmt.Fprintf(w, "\nFlags of every scenario:\n")
	fs := flag.NewFlagSet("common", flag.ContinueOnError)
	commonFlags(fs)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fmt.Fprintf(w, "\n`liveengine bench SCENARIO -h` lists a scenario's own flags.\n")
}

// Main runs `liveengine bench SCENARIO [flags]`: it prints a progress line
// per second on stderr, the report table on stdout, and writes -json and
// -html files when asked. SIGINT ends the run early and still reports.
func Main(args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		usage(os.Stdout)
		if len(args) == 0 {
			return fmt.Errorf("%w: no scenario given", ErrUsage)
		}
		return nil
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logrus.SetLevel(logrus.WarnLevel) // go-rtmp logs each chunk size change at info level
	rep, opts, err := run(ctx, args, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if rep == nil {
		return err
	}
	rep.WriteTable(os.Stdout)
	if opts.JSON != "" {
		if werr := rep.WriteJSON(opts.JSON); werr != nil {
			return werr
		}
	}
	if opts.HTML != "" {
		if werr := rep.WriteHTML(opts.HTML); werr != nil {
			return werr
		}
	}
	return err
}

// RunScenario runs one scenario from command-line arguments (the scenario
// name first) and returns its report; progress lines go to progress (nil
// for none). Tests and other programs use it instead of Main.
func RunScenario(ctx context.Context, args []string, progress io.Writer) (*Report, error) {
	rep, _, err := run(ctx, args, progress)
	return rep, err
}

func run(ctx context.Context, args []string, progress io.Writer) (*Report, *Options, error) {
	name := args[0]
	sc, ok := scenarios[name]
	if !ok {
		var b strings.Builder
		usage(&b)
		return nil, nil, fmt.Errorf("%w: unknown scenario %q\n%s", ErrUsage, name, b.String())
	}
	fs := flag.NewFlagSet("liveengine bench "+name, flag.ContinueOnError)
	if progress == nil {
		fs.SetOutput(io.Discard)
	} else {
		fs.SetOutput(progress)
	}
	opts := commonFlags(fs)
	runner := sc.flags(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: liveengine bench %s [flags]\n%s\n\nFlags:\n", name, sc.summary)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		return nil, opts, err
	}
	if fs.NArg() > 0 {
		return nil, opts, fmt.Errorf("%w: unexpected argument %q", ErrUsage, fs.Arg(0))
	}
	if opts.Duration <= 0 {
		return nil, opts, fmt.Errorf("%w: -duration must be positive", ErrUsage)
	}
	if err := runner.prepare(ctx); err != nil {
		return nil, opts, err
	}
	r := NewRun(name, sc.target(fs), sc.clients(fs))
	r.FramesLabel = sc.framesLabel
	pid := opts.ServerPID
	if pid == 0 && opts.ServerName != "" {
		p, err := FindProcess(opts.ServerName)
		if err != nil {
			return nil, opts, err
		}
		pid = p
	}
	if pid != 0 {
		ps, err := NewProcSampler(pid)
		if err != nil {
			return nil, opts, err
		}
		r.proc = ps
	}
	if opts.Quiet {
		progress = nil
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Duration)
	defer cancel()
	stopProgress, progressDone := make(chan struct{}), make(chan struct{})
	go r.progress(progress, stopProgress, progressDone)
	err := runner.run(ctx, r)
	close(stopProgress)
	<-progressDone
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || errors.Is(err, errStopped) {
		err = nil
	}
	return r.Report(), opts, err
}
