package admin

// The user page's strings (me.go, web/templates/me.html), added to
// messages; every language has every key (TestMessagesComplete).
var meMessages = map[string]map[string]string{
	"en": {
		"nav.me": "My usage", "me.ownonly": "Your own account, as you are signed in to OpenWebUI. Nobody else's usage is shown here.",
		"me.blocked": "An administrator has blocked your account: model calls are refused.",
		"me.cost30":  "Cost, last 30 days", "me.calls30": "Calls, last 30 days", "me.tokens30": "Tokens, last 30 days",
		"me.limits": "Your budget limits", "me.nolimits": "No budget limit applies to you: your balance is what you can spend.",
		"me.col.limit": "Limit", "me.col.scope": "Set for", "me.col.used": "Used", "me.col.amount": "Allowed",
		"me.col.remaining": "Left", "me.col.resets": "Resets", "me.exhausted": "used up",
		"me.rollingnote":  "A rolling window counts the usage of its last hours or days: usage leaves it as it ages, and the time shown is when today's has left it at the latest.",
		"me.measure.cost": "Cost", "me.measure.tokens": "Tokens", "me.measure.messages": "Messages",
		"me.window.day": "per day", "me.window.week": "per week", "me.window.month": "per month", "me.window.rolling": "over the last %s",
		"me.scope.user": "you", "me.scope.group": "group", "me.scope.role": "role", "me.scope.all": "everyone", "me.shared": "shared pool",
		"me.daily": "Daily cost, last 30 days", "me.bymodel": "By model, last 30 days", "me.nousage": "No usage in the last 30 days.",
		"me.signin":      "You are not signed in to OpenWebUI.",
		"me.expired":     "Your OpenWebUI session has expired, or the credential is not valid.",
		"me.forbidden":   "OpenWebUI would not say whose API key this is (an administrator must allow /api/v1/auths for API keys).",
		"me.unavailable": "The usage monitor cannot reach OpenWebUI to identify you. Try again shortly.",
		"me.off":         "This page is not available here: this monitor does not identify OpenWebUI users.",
		"me.login":       "Sign in to OpenWebUI", "me.loginhint": "Sign in to OpenWebUI in this browser, then open this page again.",
		"me.store": "The monitor's database is unavailable; try again shortly.",
	},
	"zh": {
		"nav.me": "我的用量", "me.ownonly": "这是你登录 OpenWebUI 所用的账户。这里不会显示其他人的用量。",
		"me.blocked": "管理员已停用你的账户：模型调用会被拒绝。",
		"me.cost30":  "费用（近 30 天）", "me.calls30": "调用次数（近 30 天）", "me.tokens30": "令牌数（近 30 天）",
		"me.limits": "你的预算限额", "me.nolimits": "你没有预算限额：可用额度就是你的余额。",
		"me.col.limit": "限额", "me.col.scope": "适用于", "me.col.used": "已用", "me.col.amount": "额度",
		"me.col.remaining": "剩余", "me.col.resets": "重置时间", "me.exhausted": "已用完",
		"me.rollingnote":  "滚动窗口统计最近若干小时或天数内的用量：用量随时间移出窗口，显示的时间是今天的用量最迟全部移出的时间。",
		"me.measure.cost": "费用", "me.measure.tokens": "令牌", "me.measure.messages": "消息",
		"me.window.day": "每天", "me.window.week": "每周", "me.window.month": "每月", "me.window.rolling": "最近 %s",
		"me.scope.user": "你本人", "me.scope.group": "群组", "me.scope.role": "角色", "me.scope.all": "所有人", "me.shared": "共享额度",
		"me.daily": "每日费用（近 30 天）", "me.bymodel": "按模型（近 30 天）", "me.nousage": "近 30 天没有用量。",
		"me.signin":      "你尚未登录 OpenWebUI。",
		"me.expired":     "你的 OpenWebUI 会话已过期，或凭据无效。",
		"me.forbidden":   "OpenWebUI 拒绝说明该 API 密钥属于谁（管理员需要为 API 密钥允许 /api/v1/auths）。",
		"me.unavailable": "用量监控无法访问 OpenWebUI 来识别你的身份，请稍后再试。",
		"me.off":         "此处无法使用该页面：本监控不识别 OpenWebUI 用户。",
		"me.login":       "登录 OpenWebUI", "me.loginhint": "请在此浏览器中登录 OpenWebUI，然后重新打开此页面。",
		"me.store": "监控的数据库暂时不可用，请稍后再试。",
	},
	"es": {
		"nav.me": "Mi uso", "me.ownonly": "Tu propia cuenta, con la que has iniciado sesión en OpenWebUI. Aquí no se muestra el uso de nadie más.",
		"me.blocked": "Un administrador ha bloqueado tu cuenta: las llamadas a modelos se rechazan.",
		"me.cost30":  "Coste, últimos 30 días", "me.calls30": "Llamadas, últimos 30 días", "me.tokens30": "Tokens, últimos 30 días",
		"me.limits": "Tus límites de presupuesto", "me.nolimits": "No se te aplica ningún límite: lo que puedes gastar es tu saldo.",
		"me.col.limit": "Límite", "me.col.scope": "Fijado para", "me.col.used": "Usado", "me.col.amount": "Permitido",
		"me.col.remaining": "Queda", "me.col.resets": "Se reinicia", "me.exhausted": "agotado",
		"me.rollingnote":  "Una ventana móvil cuenta el uso de sus últimas horas o días: el uso sale de ella al envejecer, y la hora indicada es cuando el de hoy habrá salido como muy tarde.",
		"me.measure.cost": "Coste", "me.measure.tokens": "Tokens", "me.measure.messages": "Mensajes",
		"me.window.day": "por día", "me.window.week": "por semana", "me.window.month": "por mes", "me.window.rolling": "en las últimas %s",
		"me.scope.user": "ti", "me.scope.group": "grupo", "me.scope.role": "rol", "me.scope.all": "todos", "me.shared": "bolsa compartida",
		"me.daily": "Coste diario, últimos 30 días", "me.bymodel": "Por modelo, últimos 30 días", "me.nousage": "Sin uso en los últimos 30 días.",
		"me.signin":      "No has iniciado sesión en OpenWebUI.",
		"me.expired":     "Tu sesión de OpenWebUI ha caducado o la credencial no es válida.",
		"me.forbidden":   "OpenWebUI no quiso decir de quién es esta clave API (un administrador debe permitir /api/v1/auths para las claves API).",
		"me.unavailable": "El monitor de uso no puede contactar con OpenWebUI para identificarte. Vuelve a intentarlo en un momento.",
		"me.off":         "Esta página no está disponible aquí: este monitor no identifica a los usuarios de OpenWebUI.",
		"me.login":       "Iniciar sesión en OpenWebUI", "me.loginhint": "Inicia sesión en OpenWebUI en este navegador y vuelve a abrir esta página.",
		"me.store": "La base de datos del monitor no está disponible; vuelve a intentarlo en un momento.",
	},
}

func init() {
	for lang, m := range meMessages {
		for k, s := range m {
			messages[lang][k] = s
		}
	}
}
