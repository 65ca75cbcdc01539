package sfu

import (
	"github.com/liveengine/liveengine/engine"
	"github.com/valyala/fasthttp"
)

type Room struct{}

func (r *Room) close()                              {}
func (x *SFU) muteCommand(c engine.Command)         {}
func (x *SFU) handleWS(ctx *fasthttp.RequestCtx)    {}
